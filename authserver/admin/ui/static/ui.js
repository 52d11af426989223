// authserver web UI: progressive enhancements only (every page works without this file).
// Loaded from 'self' (CSP script-src 'self'); no inline handlers anywhere.
"use strict";

function copyText(input) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(input.value);
  }
  input.select();
  return document.execCommand("copy") ? Promise.resolve() : Promise.reject(new Error("copy"));
}

function setupCopyButtons() {
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var id = button.getAttribute("data-copy-target");
      var input = document.getElementById(id);
      var status = document.querySelector('[data-copy-status-for="' + id + '"]');
      copyText(input).then(function () {
        button.textContent = "Copied";
        if (status) { status.textContent = "Copied to the clipboard."; }
      }, function () {
        input.select();
        if (status) { status.textContent = "Press Ctrl+C (or Cmd+C) to copy the selected text."; }
      });
    });
  });
}

function setupScopePickers() {
  document.querySelectorAll("[data-scope-picker]").forEach(function (picker) {
    var selected = picker.querySelector("[data-selected-scopes]");
    // What each checked umbrella covers (rendered by the server from the catalogue's
    // umbrella table): the covered scopes say so, and are granted without ticking them.
    function markCovered() {
      var coveredBy = {};
      picker.querySelectorAll("input[data-scope-covers]:checked").forEach(function (box) {
        box.getAttribute("data-scope-covers").split(" ").forEach(function (name) {
          (coveredBy[name] = coveredBy[name] || []).push(box.value);
        });
      });
      picker.querySelectorAll('input[name="scopes"]').forEach(function (box) {
        var label = box.closest("label");
        var note = label.querySelector("[data-included-by]");
        var umbrellas = coveredBy[box.value];
        label.classList.toggle("covered", Boolean(umbrellas));
        if (note) {
          note.hidden = !umbrellas;
          note.textContent = umbrellas ? "Included in " + umbrellas.join(", ") : "";
        }
      });
    }
    function refresh() {
      markCovered();
      picker.querySelectorAll("[data-scope-group]").forEach(function (group) {
        var count = group.querySelectorAll('input[name="scopes"]:checked').length;
        group.querySelector("[data-scope-count]").textContent = count + " selected";
        group.classList.toggle("has-selection", count > 0);
      });
      selected.replaceChildren();
      var checked = picker.querySelectorAll('input[name="scopes"]:checked');
      checked.forEach(function (box) {
        var item = document.createElement("li");
        var code = document.createElement("code");
        code.textContent = box.value;
        item.appendChild(code);
        var covers = box.getAttribute("data-scope-covers");
        if (covers) {
          var extent = document.createElement("span");
          extent.className = "covers-count";
          var count = covers.split(" ").length;
          extent.textContent = " (includes " + count + (count === 1 ? " scope)" : " scopes)");
          item.appendChild(extent);
        }
        selected.appendChild(item);
      });
      if (!checked.length) {
        var none = document.createElement("li");
        none.className = "none";
        none.textContent = "none yet";
        selected.appendChild(none);
      }
    }
    picker.addEventListener("change", refresh);

    var filterBox = picker.querySelector("[data-scope-filter-box]");
    var filter = picker.querySelector("[data-scope-filter]");
    if (filterBox && filter) {
      filterBox.hidden = false;
      filter.addEventListener("input", function () {
        var words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
        picker.querySelectorAll("[data-scope-group]").forEach(function (group) {
          var visible = 0;
          group.querySelectorAll(".scope-entry").forEach(function (entry) {
            var haystack = entry.getAttribute("data-scope-name");
            var match = words.every(function (word) { return haystack.indexOf(word) !== -1; });
            entry.hidden = !match;
            if (match) { visible += 1; }
          });
          group.querySelectorAll("[data-scope-family]").forEach(function (family) {
            family.hidden = !family.querySelector(".scope-entry:not([hidden])");
          });
          group.hidden = visible === 0;
          if (words.length) { group.open = visible > 0; }
        });
      });
    }
    refresh();
  });
}

function setupConfirmations() {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  setupCopyButtons();
  setupScopePickers();
  setupConfirmations();
});
