/* Telediag portal: a few small helpers, no framework. */
(function () {
  "use strict";

  // Ask before a consequential submit (signing, amending, deactivating).
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var message = button && button.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      return;
    }
    // A form that must go once (a new case): a second click while it is sent does nothing.
    var form = event.target;
    if (form.hasAttribute("data-submit-once")) {
      if (form.getAttribute("data-submitting") === "true") {
        event.preventDefault();
        return;
      }
      form.setAttribute("data-submitting", "true");
      form.querySelectorAll("button[type=submit]").forEach(function (submit) {
        submit.disabled = true;
        submit.setAttribute("aria-busy", "true");
        if (submit.hasAttribute("data-submitting-text")) {
          submit.textContent = submit.getAttribute("data-submitting-text");
        }
      });
    }
  });

  // A refused form: focus its error summary (whose links lead to each field), else its first
  // invalid field, so keyboard and screen-reader users start at the errors, not at <body>.
  var errorTarget = document.querySelector("[data-error-summary]") ||
    document.querySelector("main [aria-invalid=true]");
  if (errorTarget) { errorTarget.focus(); }

  // Back to a page kept by the browser (back button): its forms can be sent again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("form[data-submitting]").forEach(function (form) {
      form.removeAttribute("data-submitting");
      form.querySelectorAll("button[type=submit]").forEach(function (submit) { submit.disabled = false; });
    });
  });

  // Heatmap opacity sliders of the AI panel. The panel is re-rendered by the server while the
  // analysis runs (htmx swaps it in), so the chosen opacities are kept and applied again.
  var heatmapOpacity = {};
  function applyOpacity(slider) {
    var overlay = slider.closest(".card").querySelector("[data-inference-heatmap]");
    if (overlay) { overlay.style.opacity = String(slider.value / 100); }
  }
  document.addEventListener("input", function (event) {
    var slider = event.target.closest && event.target.closest("[data-inference-opacity]");
    if (!slider) { return; }
    heatmapOpacity[slider.id] = slider.value;
    applyOpacity(slider);
  });
  document.addEventListener("htmx:afterSwap", function () {
    document.querySelectorAll("[data-inference-opacity]").forEach(function (slider) {
      if (heatmapOpacity[slider.id] !== undefined) {
        slider.value = heatmapOpacity[slider.id];
        applyOpacity(slider);
      }
    });
  });

  // Bars carry their width as data: the Content-Security-Policy allows no inline style, but
  // setting it through the DOM (CSSOM) is fine. Again for every panel htmx swaps in.
  function applyWidths(root) {
    root.querySelectorAll("[data-td-width]").forEach(function (node) {
      node.style.width = node.getAttribute("data-td-width") + "%";
    });
  }
  applyWidths(document);
  document.body.addEventListener("htmx:load", function (event) { applyWidths(event.target); });

  // Show the chosen file names under a multiple file input.
  document.querySelectorAll("[data-file-list-for]").forEach(function (list) {
    var input = document.getElementById(list.getAttribute("data-file-list-for"));
    if (!input) { return; }
    input.addEventListener("change", function () {
      list.innerHTML = "";
      Array.prototype.forEach.call(input.files, function (file) {
        var item = document.createElement("li");
        item.textContent = file.name + " (" + Math.max(1, Math.round(file.size / 1024)) + " KB)";
        list.appendChild(item);
      });
    });
  });
})();
