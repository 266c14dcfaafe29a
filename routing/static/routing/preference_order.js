// Role preferences: ▲ ▼ buttons that move a row and renumber the positions, so reordering
// is two clicks and a save. Without JavaScript the position numbers still work.
"use strict";
(function () {
  function rows(group) {
    return Array.from(group.querySelectorAll("tbody tr.form-row:not(.empty-form)"));
  }

  // A blank extra row must stay unchanged, or the formset would validate it as a new preference.
  function filled(row) {
    return row.classList.contains("has_original") || Array.from(row.querySelectorAll("select")).some(function (s) {
      return s.value !== "";
    });
  }

  function renumber(group) {
    rows(group).filter(filled).forEach(function (row, index) {
      var input = row.querySelector("td.field-position input");
      if (input) {
        input.value = String((index + 1) * 10);
      }
    });
  }

  function move(row, up) {
    var group = row.closest(".inline-group");
    var sibling = up ? row.previousElementSibling : row.nextElementSibling;
    while (sibling && !sibling.classList.contains("form-row")) {
      sibling = up ? sibling.previousElementSibling : sibling.nextElementSibling;
    }
    if (!sibling || sibling.classList.contains("empty-form")) {
      return;
    }
    if (up) {
      sibling.before(row);
    } else {
      sibling.after(row);
    }
    renumber(group);
  }

  function button(label, title, up) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "order-button " + (up ? "order-up" : "order-down");
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", function (event) {
      move(event.target.closest("tr"), up);
    });
    return b;
  }

  function decorate(row) {
    var cell = row.querySelector("td.field-position");
    if (!cell || cell.querySelector(".order-button")) {
      return;
    }
    cell.appendChild(button("▲", "Move up", true));
    cell.appendChild(button("▼", "Move down", false));
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".inline-group .preference-order, .inline-group.preference-order").forEach(function (node) {
      var group = node.closest(".inline-group") || node;
      rows(group).forEach(decorate);
    });
  });
  // Rows added with "Add another preference" get their buttons too.
  document.addEventListener("formset:added", function (event) {
    var row = event.target;
    if (row && row.closest && row.closest(".preference-order")) {
      decorate(row);
    }
  });
})();
