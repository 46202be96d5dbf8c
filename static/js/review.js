/* Review workspace: zoomable image viewers with the AI heatmap, "accept the AI suggestion",
 * keyboard shortcuts, and the review queue's new-row highlight.
 *
 * Content-Security-Policy: this file sets sizes and transforms through element.style (CSSOM),
 * which the policy allows; it never writes a style attribute.
 */
(function () {
  "use strict";

  var MAX_SCALE = 16;
  var STEP = 1.25;

  // --- Zoom and pan -------------------------------------------------------------------------

  function Viewer(root) {
    this.root = root;
    this.frame = root.querySelector("[data-zoom-frame]");
    this.stage = root.querySelector("[data-zoom-stage]");
    this.heatmap = root.querySelector("[data-zoom-heatmap]");
    this.level = root.querySelector("[data-zoom-level]");
    this.toggle = root.querySelector("[data-heatmap-toggle]");
    this.strength = root.querySelector("[data-heatmap-strength]");
    this.note = root.querySelector("[data-heatmap-note]");
    this.width = parseInt(root.getAttribute("data-width"), 10) || 1;
    this.height = parseInt(root.getAttribute("data-height"), 10) || 1;
    this.scale = 1;
    this.x = 0;
    this.y = 0;
    this.fitted = true;
    // The frame keeps the image's shape (CSS caps its height); the stage is the image at 100 %.
    this.frame.style.aspectRatio = this.width + " / " + this.height;
    this.stage.style.width = this.width + "px";
    this.stage.style.height = this.height + "px";
    this.bind();
    this.fit();
  }

  Viewer.prototype.fitScale = function () {
    var fw = this.frame.clientWidth || 1;
    var fh = this.frame.clientHeight || 1;
    return Math.min(fw / this.width, fh / this.height);
  };

  Viewer.prototype.clamp = function () {
    var fw = this.frame.clientWidth;
    var fh = this.frame.clientHeight;
    var sw = this.width * this.scale;
    var sh = this.height * this.scale;
    // Smaller than the frame: centred. Larger: no empty band on either side.
    this.x = sw <= fw ? (fw - sw) / 2 : Math.min(0, Math.max(fw - sw, this.x));
    this.y = sh <= fh ? (fh - sh) / 2 : Math.min(0, Math.max(fh - sh, this.y));
  };

  Viewer.prototype.apply = function () {
    this.clamp();
    this.stage.style.transform = "translate(" + this.x + "px, " + this.y + "px) scale(" + this.scale + ")";
    var percent = Math.round(this.scale * 100);
    this.level.textContent = this.fitted ? "Fit (" + percent + "%)" : percent + "%";
    this.root.setAttribute("data-scale", this.scale.toFixed(4));
    this.root.classList.toggle("td-zoomed", !this.fitted);
  };

  Viewer.prototype.fit = function () {
    this.scale = this.fitScale();
    this.fitted = true;
    this.apply();
  };

  // Zoom to ``scale`` keeping the frame point (cx, cy) over the same image point.
  Viewer.prototype.zoomTo = function (scale, cx, cy) {
    var min = Math.min(this.fitScale(), 1);
    scale = Math.max(min, Math.min(MAX_SCALE, scale));
    if (cx === undefined) {
      cx = this.frame.clientWidth / 2;
      cy = this.frame.clientHeight / 2;
    }
    var u = (cx - this.x) / this.scale;
    var v = (cy - this.y) / this.scale;
    this.scale = scale;
    this.x = cx - u * scale;
    this.y = cy - v * scale;
    this.fitted = Math.abs(scale - this.fitScale()) < 1e-6;
    this.apply();
  };

  Viewer.prototype.step = function (direction, cx, cy) {
    this.zoomTo(direction > 0 ? this.scale * STEP : this.scale / STEP, cx, cy);
  };

  Viewer.prototype.bind = function () {
    var self = this;
    var drag = null;
    this.root.querySelectorAll("[data-zoom-step]").forEach(function (button) {
      button.addEventListener("click", function () { self.step(parseInt(button.getAttribute("data-zoom-step"), 10)); });
    });
    this.root.querySelector("[data-zoom-fit]").addEventListener("click", function () { self.fit(); });
    this.root.querySelector("[data-zoom-actual]").addEventListener("click", function () { self.zoomTo(1); });
    this.frame.addEventListener("wheel", function (event) {
      event.preventDefault();
      var box = self.frame.getBoundingClientRect();
      self.step(event.deltaY < 0 ? 1 : -1, event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    this.frame.addEventListener("dblclick", function (event) {
      var box = self.frame.getBoundingClientRect();
      self.zoomTo(self.scale * 2, event.clientX - box.left, event.clientY - box.top);
    });
    this.frame.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) { return; }
      drag = { id: event.pointerId, x: event.clientX, y: event.clientY };
      self.frame.setPointerCapture(event.pointerId);
      self.frame.classList.add("td-dragging");
    });
    this.frame.addEventListener("pointermove", function (event) {
      if (!drag || drag.id !== event.pointerId) { return; }
      self.x += event.clientX - drag.x;
      self.y += event.clientY - drag.y;
      drag.x = event.clientX;
      drag.y = event.clientY;
      self.apply();
    });
    function endDrag() {
      drag = null;
      self.frame.classList.remove("td-dragging");
    }
    this.frame.addEventListener("pointerup", endDrag);
    this.frame.addEventListener("pointercancel", endDrag);
    // Arrow keys pan a focused frame (the page scrolls otherwise).
    this.frame.addEventListener("keydown", function (event) {
      var moves = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
      var move = moves[event.key];
      if (!move || self.fitted) { return; }
      event.preventDefault();
      self.x += move[0];
      self.y += move[1];
      self.apply();
    });
    this.frame.addEventListener("focus", function () { current = viewers.indexOf(self); });
    this.root.addEventListener("pointerdown", function () { current = viewers.indexOf(self); });
    if (this.toggle) {
      this.toggle.addEventListener("change", function () { self.showHeatmap(self.toggle.checked); });
    }
    if (this.strength) {
      this.strength.addEventListener("input", function () { self.heatmap.style.opacity = String(self.strength.value / 100); });
      this.heatmap.style.opacity = String(this.strength.value / 100);
    }
  };

  Viewer.prototype.showHeatmap = function (on) {
    if (!this.heatmap.getAttribute("src")) { on = false; }
    this.heatmap.hidden = !on;
    this.toggle.checked = on;
    this.root.classList.toggle("td-heatmap-on", on);
  };

  // The heatmap of this image comes from the AI panel (it knows the model version shown).
  Viewer.prototype.syncHeatmap = function () {
    var smear = this.root.getAttribute("data-viewer-smear");
    var card = document.querySelector(".td-ai-smear[data-smear-id='" + smear + "'][data-heatmap-url]");
    var url = card ? card.getAttribute("data-heatmap-url") : "";
    if (url) {
      if (this.heatmap.getAttribute("src") !== url) { this.heatmap.setAttribute("src", url); }
      this.toggle.disabled = false;
      this.strength.disabled = false;
      this.note.textContent = "AI heatmap available: press h or use the switch.";
    } else {
      this.heatmap.removeAttribute("src");
      this.showHeatmap(false);
      this.toggle.disabled = true;
      this.strength.disabled = true;
      this.note.textContent = "No heatmap yet.";
    }
  };

  var viewers = [];
  var current = 0;
  document.querySelectorAll("[data-zoom-viewer]").forEach(function (root) {
    var viewer = new Viewer(root);
    viewers.push(viewer);
    var img = root.querySelector(".td-zoom-img");
    if (img && !img.complete) { img.addEventListener("load", function () { if (viewer.fitted) { viewer.fit(); } }); }
  });
  window.addEventListener("resize", function () {
    viewers.forEach(function (viewer) { if (viewer.fitted) { viewer.fit(); } else { viewer.apply(); } });
  });

  function focusViewer(index) {
    if (!viewers.length) { return; }
    current = (index + viewers.length) % viewers.length;
    var viewer = viewers[current];
    viewer.root.scrollIntoView({ block: "start", behavior: "auto" });
    viewer.frame.focus({ preventScroll: true });
  }

  // --- Accept the AI suggestion -----------------------------------------------------------------

  var acceptButton = document.querySelector("[data-accept-ai]");

  function aiSuggestion() {
    var result = document.querySelector("[data-ai-label]");
    var label = result ? result.getAttribute("data-ai-label") : "";
    var radio = label ? document.querySelector("input[name='sign-diagnosis'][value='" + label + "']") : null;
    return radio ? { radio: radio, text: result.getAttribute("data-ai-label-display") || label } : null;
  }

  function syncAccept() {
    if (!acceptButton) { return; }
    var suggestion = aiSuggestion();
    acceptButton.disabled = !suggestion;
    acceptButton.querySelector("[data-accept-ai-label]").textContent = suggestion ? ": " + suggestion.text : " (none yet)";
  }

  function chooseDiagnosis(radio) {
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    radio.focus();
  }

  function acceptAi() {
    var suggestion = aiSuggestion();
    if (!suggestion) { return; }
    chooseDiagnosis(suggestion.radio);
    var password = document.getElementById("id_sign-password");
    if (password) { password.focus(); }
  }

  if (acceptButton) { acceptButton.addEventListener("click", acceptAi); }

  function syncAll() {
    viewers.forEach(function (viewer) { viewer.syncHeatmap(); });
    syncAccept();
  }
  syncAll();
  // The AI panel is re-rendered by the server while the analysis runs (htmx swaps it in).
  document.body.addEventListener("htmx:afterSettle", syncAll);

  // --- Keyboard shortcuts ----------------------------------------------------------------------

  // Keys typed into a field are text, never shortcuts; a focused radio, switch or slider takes no letters.
  var NOT_TEXT = ["radio", "checkbox", "range", "button", "submit", "reset", "color"];
  function typing(target) {
    if (!target || !target.tagName) { return false; }
    var tag = target.tagName.toLowerCase();
    if (tag === "input") { return NOT_TEXT.indexOf((target.type || "").toLowerCase()) === -1; }
    return tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  if (viewers.length || acceptButton) {
    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
      var viewer = viewers[current];
      var key = event.key;
      var handled = true;
      if (key === "a" && acceptButton && !acceptButton.disabled) {
        acceptAi();
      } else if (/^[1-9]$/.test(key) && document.querySelector("input[name='sign-diagnosis']")) {
        var radio = document.querySelectorAll("input[name='sign-diagnosis']")[parseInt(key, 10) - 1];
        if (radio) { chooseDiagnosis(radio); } else { handled = false; }
      } else if (key === "n") {
        focusViewer(current + 1);
      } else if (key === "p") {
        focusViewer(current - 1);
      } else if ((key === "+" || key === "=") && viewer) {
        viewer.step(1);
      } else if (key === "-" && viewer) {
        viewer.step(-1);
      } else if (key === "0" && viewer) {
        viewer.fit();
      } else if (key === "h" && viewer && !viewer.toggle.disabled) {
        viewer.showHeatmap(viewer.heatmap.hidden);
      } else if (key === "j" && document.querySelector("[data-next-case]")) {
        window.location.assign(document.querySelector("[data-next-case]").href);
      } else {
        handled = false;
      }
      if (handled) { event.preventDefault(); }
    });
  }

  // --- Review queue: mark the rows a background refresh brought in ------------------------------

  var seenCases = null;
  function queueCases() {
    return Array.prototype.map.call(document.querySelectorAll("[data-queue-region] tr[data-case]"), function (row) {
      return row.getAttribute("data-case");
    });
  }
  if (document.querySelector("[data-queue-region]")) {
    seenCases = queueCases();
    document.body.addEventListener("htmx:afterSettle", function () {
      document.querySelectorAll("[data-queue-region] tr[data-case]").forEach(function (row) {
        if (seenCases.indexOf(row.getAttribute("data-case")) === -1) { row.classList.add("td-row-new"); }
      });
      seenCases = seenCases.concat(queueCases());
    });
  }
})();
