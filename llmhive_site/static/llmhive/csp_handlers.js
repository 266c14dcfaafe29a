// django-import-export's export page wires its "Select all" checkbox with an inline onchange
// attribute, which our Content-Security-Policy refuses. Replace it with a listener calling the
// same function (from the library's own export_selectable_fields.js) before the user can click.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input.select-toggle[onchange]").forEach((toggle) => {
    toggle.removeAttribute("onchange");
    toggle.addEventListener("change", (event) => window.onSelectToggleChange(event));
  });
});
