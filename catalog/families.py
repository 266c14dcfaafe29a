"""Families that cover the catalog: the grouping rule behind family suggestions, version drift,
and adopting a suggestion. The rule (docs/catalog.md) is written as pure functions over model ids
so that it can be read and tested without a database; the functions at the end apply it to the
catalog.

An id `author/slug[:variant]` is read as: the author, a line (the words before the version), the
version (the first token carrying a number, `4.6`, `qwen3.5`, `k2.7`, `4o`) and the rest. Dates
(`-20250929`, `-2507`, `-08-2024`), sizes (`-120b`, `-a3b`) and `:free`/`:extended`/... variants
are never versions. A family is suggested per author, line and version (`anthropic/claude-opus-4.6*`);
an id without a version is grouped by its line (`perplexity/sonar*` takes `sonar-pro`), and
`~author/<line>-latest` aliases join the family of the newest version of their line.
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from catalog.apply import reclassify_models
from catalog.models import (
    CATALOG_VERSION,
    AlertKind,
    CatalogModel,
    Family,
    FamilySuggestion,
    SuggestionState,
    classify_family,
)
from core.alerts import NewAlert, raise_alerts
from core.models import Alert, DataVersion

ALIAS_PREFIX = "~"
ALIAS_SUFFIX = "-latest"
# Suggestions that fix no drift sit after the seeded and hand-written families (priority 10-100):
# BAND + 99 - len(stem), so that a longer (more specific) prefix is always tried first.
BAND = 100

_VERSION = re.compile(r"^([a-z]*?)(\d+(?:\.\d+)*)([a-z]?)$")
_SIZE = re.compile(r"^(?:a|e)?\d+(?:\.\d+)?[bmkt]$|^\d+x\d+b$")
_DIGITS = re.compile(r"^\d+$")
_PATTERN_VERSION = re.compile(r"(\d+(?:\.\d+)*)([a-z]?)(?=[-*:]|$)")
_ACRONYMS = {"gpt", "glm", "oss", "vl", "ai", "lfm", "ds", "ui", "rp", "ii"}


@dataclass(frozen=True)
class ModelKey:
    """How the grouping rule reads one id."""

    model_id: str
    author: str
    alias: bool
    stem: str  # the line and its version: "claude-opus-4.6", or the line alone: "sonar"
    version: str | None  # "4.6", "3.5", "4o"; None for an id without one
    words: tuple[str, ...] = field(default=())  # every word of the slug, dates and sizes left out

    @property
    def prefix(self) -> str:
        return f"{self.author}/{self.stem}"

    @property
    def version_tuple(self) -> tuple:
        return version_tuple(self.version)


def version_tuple(version: str | None) -> tuple:
    """ "4.6" -> ((4, 6), ""), "4o" -> ((4,), "o"): comparable between any two versions."""
    match = _VERSION.match(version or "")
    if not match:
        return ((), "")
    return tuple(int(n) for n in match.group(2).split(".")), match.group(3)


def _is_date(tokens: list[str], i: int) -> bool:
    token = tokens[i]
    if _DIGITS.match(token) and len(token) >= 3:  # 20250929, 2507, 0528, 001
        return True
    # 08-2024, 06-17: two digits followed by more digits
    return len(token) == 2 and token.isdigit() and i + 1 < len(tokens) and tokens[i + 1].isdigit()


def parse_id(model_id: str) -> ModelKey:
    alias = model_id.startswith(ALIAS_PREFIX)
    author, _, slug = model_id.removeprefix(ALIAS_PREFIX).partition("/")
    slug = slug.split(":", 1)[0].lower()
    if alias:
        slug = slug.removesuffix(ALIAS_SUFFIX)
    tokens = slug.split("-")
    stem_tokens: list[str] = []
    version = None
    stopped = False
    words: list[str] = []
    for i, token in enumerate(tokens):
        if _is_date(tokens, i) or _SIZE.match(token):
            stopped = True
            continue
        match = _VERSION.match(token)
        if match and version is None and not stopped:
            stem_tokens.append(token)
            version = match.group(2) + match.group(3)
            stopped = True
            words.extend(w for w in (match.group(1), token) if w)
            continue
        if any(c.isdigit() for c in token):
            stopped = True
        elif not stopped:
            stem_tokens.append(token)
        words.append(token)
    stem = "-".join(stem_tokens) or tokens[0]
    return ModelKey(model_id, author, alias, stem, version, tuple(words))


def pattern_version(pattern: str) -> str | None:
    """The version a family's glob names: the last number in its literal part
    (`anthropic/claude-*-4.5*` -> "4.5", `qwen/qwen3.5*` -> "3.5"); None for `perplexity/sonar*`."""
    literal = pattern.partition("/")[2] or pattern
    found = _PATTERN_VERSION.findall(literal.split(":", 1)[0])
    return found[-1][0] + found[-1][1] if found else None


def drifts(model_id: str, family) -> bool:
    """A model whose version differs from its family's: Claude Opus 4.6 in "Claude 4"."""
    if family is None:
        return False
    model_version = parse_id(model_id).version
    family_version = pattern_version(family.pattern)
    return bool(model_version and family_version) and model_version != family_version


def alias_target(alias: ModelKey, keys: Iterable[ModelKey]) -> ModelKey | None:
    """The newest versioned id of the alias's line (`~openai/gpt-mini-latest` -> gpt-5.4-mini);
    among equal versions the one with the fewest words (gpt-5.5 before gpt-5.5-pro)."""
    wanted = set(alias.stem.split("-"))
    first = alias.stem.split("-")[0]
    candidates = [
        k
        for k in keys
        if not k.alias and k.version and k.author == alias.author and k.words[:1] == (first,) and wanted <= set(k.words)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda k: (k.version_tuple, -len(k.words), k.model_id))


def family_name(stem: str) -> str:
    return " ".join(w.upper() if w in _ACRONYMS else (w[:1].upper() + w[1:]) for w in stem.split("-"))


def _slug(stem: str) -> str:
    return re.sub(r"[^a-z0-9.\-]+", "-", stem.lower()).strip("-.")[:64]


def _qualified_slug(author: str, stem: str) -> str:
    """`meta-llama` + `llama-3.3` -> `meta-llama-3.3`; `nvidia` + `llama-3.3` -> `nvidia-llama-3.3`."""
    last = author.split("-")[-1]
    if stem == last or stem.startswith(last + "-"):
        return _slug(f"{author}{stem[len(last) :]}")
    return _slug(f"{author}-{stem}")


@dataclass
class Suggestion:
    pattern: str
    slug: str
    name: str
    vendor: str
    priority: int
    model_ids: list[str]
    aliases: list[str] = field(default_factory=list)
    drift: bool = False
    # An alias whose line already has its family is suggested as an extra glob of that family.
    extends: Family | None = None


def suggest(
    active_ids: Iterable[str],
    families: list,
    *,
    vendors: dict[str, str] | None = None,
    rejected: Iterable[str] = (),
) -> list[Suggestion]:
    """Families for the active models that have none or that drift from theirs, biggest first.

    `families` are Family rows (or objects with slug, pattern, aliases, priority, matches()),
    `vendors` maps an author to a display name, `rejected` holds patterns never to suggest again.
    """
    vendors = vendors or {}
    rejected = set(rejected)
    keys = {model_id: parse_id(model_id) for model_id in active_ids}
    current = {model_id: classify_family(model_id, families) for model_id in keys}
    wanted = [m for m in keys if current[m] is None or drifts(m, current[m])]

    groups: dict[str, list[str]] = defaultdict(list)
    aliases: dict[str, list[str]] = defaultdict(list)
    extensions = []
    for model_id in wanted:
        key = keys[model_id]
        if key.alias:
            target = alias_target(key, keys.values())
            holder = current.get(target.model_id) if target else None
            if holder is not None and not drifts(target.model_id, holder):
                extensions.append(_extension(model_id, holder))
                continue
            if target is not None:
                aliases[target.prefix].append(model_id)
                continue
        groups[key.prefix].append(model_id)
    for prefix in aliases:
        groups.setdefault(prefix, [])
    # An id without a version joins the shorter versionless line it extends (sonar-pro -> sonar).
    versionless = sorted((p for p in groups if parse_id(p).version is None), key=len)
    for prefix in reversed(versionless):
        shorter = next((p for p in versionless if p != prefix and prefix.startswith(p + "-")), None)
        if shorter:
            groups[shorter].extend(groups.pop(prefix))
            aliases[shorter].extend(aliases.pop(prefix, []))

    taken_slugs = {f.slug for f in families}
    # A slug two authors would share (llama-3.3 of Meta and of NVIDIA) is qualified for both.
    clash = defaultdict(int)
    for prefix in groups:
        clash[_slug(prefix.partition("/")[2])] += 1
    suggestions = []
    for prefix, ids in groups.items():
        pattern = f"{prefix}*"
        if pattern in rejected:
            continue
        author, stem = prefix.split("/", 1)
        slug = _slug(stem)
        if clash[slug] > 1 or slug in taken_slugs:
            slug = _qualified_slug(author, stem)
        base, n = slug, 2
        while slug in taken_slugs:
            slug, n = f"{base}-{n}", n + 1
        taken_slugs.add(slug)
        members = sorted(ids)
        alias_ids = sorted(aliases.get(prefix, []))
        drifted = [current[m] for m in members if current[m] is not None]
        suggestions.append(
            Suggestion(
                pattern=pattern,
                slug=slug,
                name=family_name(stem),
                vendor=vendors.get(author, author),
                priority=_priority(pattern, members, drifted, current),
                model_ids=members + alias_ids,
                aliases=alias_ids,
                drift=bool(drifted),
            )
        )
    suggestions.extend(e for e in extensions if e.pattern not in rejected)
    return sorted(suggestions, key=lambda s: (-len(s.model_ids), s.pattern))


def _extension(alias_id: str, family) -> Suggestion:
    """`~anthropic/claude-haiku-latest` when claude-haiku-4.5 is in "Claude 4.5": the alias
    becomes one more glob of that family, not a family of its own."""
    return Suggestion(
        pattern=alias_id,
        slug=family.slug,
        name=family.name,
        vendor=family.vendor,
        priority=family.priority,
        model_ids=[alias_id],
        aliases=[alias_id],
        extends=family,
    )


def _priority(pattern: str, members: list[str], drifted: list, current: dict) -> int:
    """Before the families it takes drifted models from; after the families that rightly hold
    other ids its glob matches; otherwise by specificity (a longer prefix first)."""
    if drifted:
        return max(0, min(f.priority for f in drifted) - 1)
    priority = BAND + max(0, 99 - len(pattern))
    member_set = set(members)
    for model_id, family in current.items():
        if family is not None and model_id not in member_set and fnmatch.fnmatchcase(model_id, pattern):
            if not drifts(model_id, family):
                priority = max(priority, family.priority + 1)
    return priority


def conflicts(model_ids: Iterable[str], families: list) -> dict[str, list[str]]:
    """Ids claimed by two families at the same (winning) priority, with those families' slugs."""
    found = {}
    for model_id in model_ids:
        matching = [f for f in families if f.matches(model_id)]
        if not matching:
            continue
        best = min(f.priority for f in matching)
        tied = sorted(f.slug for f in matching if f.priority == best)
        if len(tied) > 1:
            found[model_id] = tied
    return found


# --- The catalog ---------------------------------------------------------------------------------


def _vendors() -> dict[str, str]:
    """author -> the vendor OpenRouter names ("Anthropic: Claude Opus 4.6" -> "Anthropic")."""
    vendors = {}
    for author, name in CatalogModel.objects.active().exclude(name="").values_list("author", "name"):
        if ": " in name:
            vendors.setdefault(author, name.split(": ", 1)[0])
    return vendors


def current_suggestions() -> list[Suggestion]:
    active = CatalogModel.objects.active().values_list("id", flat=True)
    rejected = FamilySuggestion.objects.filter(state=SuggestionState.REJECTED).values_list("pattern", flat=True)
    return suggest(list(active), list(Family.objects.all()), vendors=_vendors(), rejected=list(rejected))


@transaction.atomic
def refresh_suggestions() -> list[FamilySuggestion]:
    """Bring the pending suggestions up to date and return them, biggest first. A pending one
    still suggested keeps what an admin edited (slug, name, priority...) and gets its current
    models; one no longer suggested goes; rejected patterns are never suggested again (an
    accepted one whose family was deleted is suggested anew). A fixed number of queries."""
    suggestions = current_suggestions()
    patterns = [s.pattern for s in suggestions]
    FamilySuggestion.objects.filter(state=SuggestionState.PENDING).exclude(pattern__in=patterns).delete()
    existing = {row.pattern: row for row in FamilySuggestion.objects.filter(pattern__in=patterns)}
    now = timezone.now()
    kept, renewed, new = [], [], []
    for s in suggestions:
        row = existing.get(s.pattern)
        if row is not None and row.state == SuggestionState.PENDING:
            row.model_ids, row.drift = s.model_ids, s.drift
            kept.append(row)
            continue
        fresh = {
            "aliases": s.aliases,
            "slug": s.slug,
            "name": s.name,
            "vendor": s.vendor,
            "priority": s.priority,
            "model_ids": s.model_ids,
            "drift": s.drift,
            "state": SuggestionState.PENDING,
            "created_at": now,
            "decided_at": None,
            "family": s.extends,
        }
        if row is None:
            new.append(FamilySuggestion(pattern=s.pattern, **fresh))
        else:
            for name, value in fresh.items():
                setattr(row, name, value)
            renewed.append(row)
    FamilySuggestion.objects.bulk_update(kept, ["model_ids", "drift"], batch_size=500)
    FamilySuggestion.objects.bulk_update(renewed, list(_RENEWED_FIELDS), batch_size=500)
    FamilySuggestion.objects.bulk_create(new, batch_size=500)
    return sorted(
        FamilySuggestion.objects.filter(state=SuggestionState.PENDING).select_related("family"),
        key=lambda row: (-len(row.model_ids), row.pattern),
    )


_RENEWED_FIELDS = (
    "aliases",
    "slug",
    "name",
    "vendor",
    "priority",
    "model_ids",
    "drift",
    "state",
    "created_at",
    "decided_at",
    "family",
)


class AcceptError(Exception):
    """The suggestion cannot become a family as it stands (its slug is taken)."""


def accept(suggestions: Iterable[FamilySuggestion]) -> tuple[list[Family], int]:
    """Create a family for each pending suggestion (or, for one that names a family, add its
    aliases to that family), then reclassify the catalog once and bump the catalog's version.
    Returns the families created or extended and the number of models that moved."""
    pending = [s for s in suggestions if s.state == SuggestionState.PENDING]
    if not pending:
        return [], 0
    creating = [s for s in pending if s.family_id is None]
    slugs = [s.slug for s in creating]
    taken = set(Family.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    taken |= {slug for slug in slugs if slugs.count(slug) > 1}
    if taken:
        raise AcceptError(f"a family with slug {sorted(taken)[0]!r} exists; edit the suggestion's slug")
    now = timezone.now()
    with transaction.atomic():
        created = Family.objects.bulk_create(
            [
                Family(
                    slug=s.slug,
                    name=s.name,
                    pattern=s.pattern,
                    aliases=s.aliases,
                    priority=s.priority,
                    vendor=s.vendor,
                )
                for s in creating
            ]
        )
        for suggestion, family in zip(creating, created, strict=True):
            suggestion.family = family
        extended = {}
        for suggestion in pending:
            if suggestion.family not in created:
                family = extended.setdefault(suggestion.family_id, suggestion.family)
                family.aliases = [*family.aliases, *(a for a in suggestion.aliases if a not in family.aliases)]
            suggestion.state, suggestion.decided_at = SuggestionState.ACCEPTED, now
        Family.objects.bulk_update(extended.values(), ["aliases"])
        FamilySuggestion.objects.bulk_update(pending, ["state", "decided_at", "family"], batch_size=500)
        moved = reclassify_models()
        # bulk writes send no post_save: routing's snapshot learns of the families here.
        DataVersion.bump(CATALOG_VERSION)
    return [*created, *extended.values()], moved


def reject(suggestions: Iterable[FamilySuggestion]) -> int:
    ids = [s.pk for s in suggestions if s.state == SuggestionState.PENDING]
    return FamilySuggestion.objects.filter(pk__in=ids).update(state=SuggestionState.REJECTED, decided_at=timezone.now())


def drifted_models(*, active_only: bool = True) -> list[tuple[str, Family]]:
    """Models (active ones unless asked otherwise) whose version differs from their family's."""
    families = {f.pk: f for f in Family.objects.all()}
    models = CatalogModel.objects.active() if active_only else CatalogModel.objects.all()
    return [
        (model_id, families[family_id])
        for model_id, family_id in models.filter(family__isnull=False).values_list("id", "family_id")
        if drifts(model_id, families[family_id])
    ]


def raise_drift_alerts() -> int:
    """One alert per drifted model (bumped while it lasts); the alerts of models that no longer
    drift are acknowledged."""
    drifted = drifted_models()
    alerts = [
        NewAlert(
            AlertKind.VERSION_DRIFT,
            f"{model_id} (version {parse_id(model_id).version}) is classified in family {family.slug} "
            f"(version {pattern_version(family.pattern)}): its preferences and overrides apply to it. "
            f"A narrower family is suggested.",
            model_id=model_id,
            details={"family": family.slug, "pattern": family.pattern},
        )
        for model_id, family in drifted
    ]
    raise_alerts(alerts)
    keys = [a.key for a in alerts]
    Alert.objects.open().filter(kind=AlertKind.VERSION_DRIFT).exclude(key__in=keys).update(
        acknowledged_at=timezone.now()
    )
    return len(alerts)


def coverage() -> dict:
    active = CatalogModel.objects.active()
    total = active.count()
    classified = active.filter(family__isnull=False).count()
    return {
        "active": total,
        "in_family": classified,
        "unclassified": total - classified,
        "fraction": round(classified / total, 4) if total else 1.0,
    }
