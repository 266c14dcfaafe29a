from django.db import migrations

# Lower priority is tried first: Claude 4.5's pattern is also matched by Claude 4's, so it must
# come before it.
FAMILIES = [
    ("gpt-5.2", "GPT-5.2", "openai/gpt-5.2*", 10, "OpenAI"),
    ("o3-pro", "o3-pro", "openai/o3-pro*", 10, "OpenAI"),
    ("claude-4.5", "Claude 4.5", "anthropic/claude-*-4.5*", 10, "Anthropic"),
    ("claude-4", "Claude 4", "anthropic/claude-*-4*", 20, "Anthropic"),
    ("gemini-3", "Gemini 3", "google/gemini-3*", 10, "Google"),
    ("grok-4", "Grok 4", "x-ai/grok-4*", 10, "xAI"),
    ("llama-4", "Llama 4", "meta-llama/llama-4*", 10, "Meta"),
]

# OpenRouter's categories for GET /models?category=X.
CATEGORIES = [
    ("programming", "Programming"),
    ("roleplay", "Roleplay"),
    ("marketing", "Marketing"),
    ("marketing/seo", "Marketing: SEO"),
    ("technology", "Technology"),
    ("science", "Science"),
    ("translation", "Translation"),
    ("legal", "Legal"),
    ("finance", "Finance"),
    ("health", "Health"),
    ("trivia", "Trivia"),
    ("academia", "Academia"),
]


def seed(apps, schema_editor):
    Family = apps.get_model("catalog", "Family")
    Category = apps.get_model("catalog", "Category")
    for slug, name, pattern, priority, vendor in FAMILIES:
        Family.objects.get_or_create(slug=slug, defaults={"name": name, "pattern": pattern, "priority": priority, "vendor": vendor})
    for slug, name in CATEGORIES:
        Category.objects.get_or_create(slug=slug, defaults={"name": name})


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
