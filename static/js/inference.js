/* Live AI analysis panel (templates/inference/case_analysis.html).
 *
 * While work is pending, polls the case's JSON endpoint every few seconds and re-renders the panel
 * from it (same markup as the server template), without reloading the page. Retry / re-run forms
 * are sent with fetch and the panel restarts polling. Untrusted text (file names, reasons) is only
 * ever set with textContent. Heatmap opacity sliders keep their value across re-renders.
 */
(function () {
  "use strict";
  if (window.telediagInference) return; // the fragment may be included more than once
  var DEFAULT_POLL_MS = 3000;
  var MAX_BACKOFF_MS = 30000;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "style") node.style.cssText = value;  // CSSOM: allowed by the Content-Security-Policy
      else node.setAttribute(key, value === true ? "" : String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "" : Number(value).toFixed(digits);
  }

  function stateBadgeClass(state) {
    return {
      done: "text-bg-success", failed: "text-bg-danger", waiting_for_model: "text-bg-warning",
      not_analysed: "text-bg-secondary"
    }[state] || "text-bg-info";
  }

  function jobBadgeClass(status) {
    return {done: "text-bg-success", failed: "text-bg-danger", running: "text-bg-primary"}[status] || "text-bg-secondary";
  }

  function bar(row, isTop, labelWidth, height, digits) {
    return el("div", {className: "d-flex align-items-center gap-2 " + (height ? "mt-1" : "small mt-1")}, [
      el("span", {className: "text-nowrap", style: "min-width: " + labelWidth, text: row.label}),
      el("div", {
        className: "progress flex-grow-1", style: height ? "height: " + height : null, role: "progressbar",
        "aria-label": row.label, "aria-valuenow": row.percent, "aria-valuemin": 0, "aria-valuemax": 100
      }, [el("div", {
        className: "progress-bar " + (isTop ? "bg-primary" : "bg-secondary"), style: "width: " + fixed(row.percent, 1) + "%"
      })]),
      el("span", {className: "text-end", style: "min-width: " + (height ? "3rem" : "3.5rem"), text: fixed(row.percent, digits) + "%"})
    ]);
  }

  function csrfInput(token) {
    return el("input", {type: "hidden", name: "csrfmiddlewaretoken", value: token || ""});
  }

  function renderSmear(smear, data, token, opacities) {
    var p = smear.prediction;
    var media = null;
    if (smear.image_url) {
      var opacity = opacities[smear.id] !== undefined ? opacities[smear.id] : 50;
      media = el("div", {className: "position-relative bg-body-tertiary"}, [
        el("img", {src: smear.image_url, alt: "Smear image", className: "card-img-top d-block", loading: "lazy"}),
        p && p.heatmap_url ? el("img", {
          src: p.heatmap_url, alt: "", "aria-hidden": "true", "data-inference-heatmap": true,
          className: "position-absolute top-0 start-0 w-100 h-100",
          style: "opacity: " + opacity / 100 + "; pointer-events: none"
        }) : null
      ]);
    }
    var body = el("div", {className: "card-body p-2 small"}, [
      el("div", {className: "text-truncate fw-semibold", title: smear.filename, text: smear.filename})
    ]);
    if (p && p.heatmap_url) {
      var id = "heatmap-opacity-" + smear.id;
      body.appendChild(el("label", {className: "form-label mb-0 mt-1 text-body-secondary", "for": id, text: "Heatmap opacity"}));
      body.appendChild(el("input", {
        type: "range", className: "form-range", min: 0, max: 100, id: id, "data-inference-opacity": true,
        value: opacities[smear.id] !== undefined ? opacities[smear.id] : 50
      }));
    }
    if (smear.job) {
      body.appendChild(el("div", {className: "mt-1", "data-testid": "ai-job-status"}, [
        el("span", {className: "badge " + jobBadgeClass(smear.job.status), text: smear.job.status}),
        " " + smear.job.status_text
      ]));
      if (smear.job.retry_url) {
        body.appendChild(el("form", {method: "post", action: smear.job.retry_url, className: "mt-2", "data-inference-action": true}, [
          csrfInput(token),
          el("button", {type: "submit", className: "btn btn-sm btn-outline-danger", text: "Retry analysis"})
        ]));
      }
    } else if (data.state !== "not_analysed") {
      body.appendChild(el("div", {
        className: "mt-1 text-body-secondary",
        text: data.state === "waiting_for_model" ? "waiting for a model" : "not analysed yet"
      }));
    }
    if (p && p.is_smear === false) {
      body.appendChild(el("div", {className: "alert alert-warning py-1 px-2 mt-2 mb-0", role: "alert", "data-testid": "ai-not-a-smear"}, [
        el("strong", {text: "Not a blood smear:"}), " " + (p.smear_reasons || []).join("; ")
      ]));
    } else if (p) {
      body.appendChild(el("div", {className: "mt-2"}, [
        el("span", {className: "text-body-secondary", text: "AI label:"}), " ",
        el("strong", {text: p.label_display}), " (" + fixed(p.top_probability, 2) + ")"
      ]));
      p.probabilities.forEach(function (row) { body.appendChild(bar(row, row.name === p.label, "8rem", ".5rem", 0)); });
      var timing = (p.queue_wait_ms !== null ? "Waited " + p.queue_wait_ms + " ms · " : "") + "inference " + p.inference_ms + " ms";
      body.appendChild(el("div", {className: "text-body-secondary mt-1", text: timing}));
    }
    return el("div", {className: "col-12 col-md-6 col-xl-4", "data-smear-id": smear.id}, [
      el("div", {className: "card h-100"}, [media, body])
    ]);
  }

  function render(section, data) {
    var body = section.querySelector("[data-inference-body]");
    var token = section.getAttribute("data-csrf-token");
    var opacities = {};
    body.querySelectorAll("[data-inference-opacity]").forEach(function (input) {
      var holder = input.closest("[data-smear-id]");
      if (holder) opacities[holder.getAttribute("data-smear-id")] = Number(input.value);
    });
    var parts = [];
    var header = el("div", {className: "d-flex flex-wrap align-items-center gap-2 mb-2"}, [
      el("h2", {className: "h5 mb-0 me-auto", text: "AI analysis"}),
      data.model_version ? el("span", {className: "badge text-bg-light border", "data-testid": "ai-model-version", text: "Model " + data.model_version.name}) : null,
      el("span", {className: "badge " + stateBadgeClass(data.state), "data-testid": "ai-state"}, [
        data.state_label,
        data.pending ? el("span", {className: "spinner-border spinner-border-sm ms-1", "aria-hidden": "true"}) : null
      ])
    ]);
    parts.push(header);
    parts.push(el("p", {className: "small text-body-secondary mb-3", "data-testid": "ai-message", text: data.message}));

    if (data.versions.length > 1) {
      var selectId = "ai-version-" + data.case.id;
      var select = el("select", {className: "form-select form-select-sm w-auto", id: selectId, "data-inference-version-select": true},
        data.versions.map(function (v) {
          return el("option", {value: v.id, selected: data.model_version && v.id === data.model_version.id, text: v.name + (v.is_active ? " (active)" : "")});
        }));
      parts.push(el("div", {className: "mb-3"}, [
        el("label", {className: "form-label small mb-1", "for": selectId, text: "Show the analysis of model version"}), select
      ]));
    }

    var result = data.result;
    if (result) {
      var box = el("div", {className: "border rounded p-3 mb-3", "data-testid": "ai-case-result"}, [
        el("div", {className: "d-flex flex-wrap align-items-baseline gap-2"}, [
          el("span", {className: "text-body-secondary small", text: "Case-level suggestion" + (result.partial ? " (so far)" : "") + ":"}),
          el("strong", {className: "fs-5", "data-testid": "ai-case-label", text: result.label_display}),
          result.label ? el("span", {className: "text-body-secondary", text: fixed(result.top_probability, 2) + " mean probability over " + result.analysed + " image" + (result.analysed === 1 ? "" : "s")}) : null
        ])
      ]);
      if (result.attention) {
        box.appendChild(el("div", {className: "alert alert-warning py-2 px-3 mt-2 mb-2", role: "alert", "data-testid": "ai-attention"}, [
          el("strong", {text: "Needs attention."}),
          el("ul", {className: "mb-0 ps-3"}, result.reasons.map(function (r) { return el("li", {text: r}); }))
        ]));
      }
      result.probability_rows.forEach(function (row) { box.appendChild(bar(row, row.name === result.label, "11rem", null, 1)); });
      parts.push(box);
    }

    if (data.smears.length) {
      parts.push(el("div", {className: "row g-3", "data-testid": "ai-smears"},
        data.smears.map(function (smear) { return renderSmear(smear, data, token, opacities); })));
    }

    if (data.rerun) {
      var rerunId = "ai-rerun-version-" + data.case.id;
      parts.push(el("form", {method: "post", action: data.rerun.url, className: "d-flex flex-wrap align-items-end gap-2 mt-3", "data-inference-action": true, "data-testid": "ai-rerun"}, [
        csrfInput(token),
        el("div", {}, [
          el("label", {className: "form-label small mb-1", "for": rerunId, text: "Re-run with model version"}),
          el("select", {className: "form-select form-select-sm", name: "model_version", id: rerunId, required: true},
            data.rerun.versions.map(function (v) {
              return el("option", {value: v.id, text: v.name + (v.is_active ? " (active)" : "") + (v.already_run ? " — already run" : "")});
            }))
        ]),
        el("button", {type: "submit", className: "btn btn-sm btn-outline-primary", disabled: !data.rerun.versions.length, text: "Re-run analysis"})
      ]));
    }
    parts.push(el("p", {className: "small text-body-secondary mt-3 mb-0", text: data.advisory}));

    body.replaceChildren.apply(body, parts);
    section.setAttribute("data-pending", data.pending ? "true" : "false");
    if (data.model_version) section.setAttribute("data-version", data.model_version.id);
  }

  function Panel(section) {
    this.section = section;
    this.url = section.getAttribute("data-json-url");
    this.pollMs = Number(section.getAttribute("data-poll-ms")) || DEFAULT_POLL_MS;
    this.failures = 0;
    this.timer = null;
    var self = this;
    section.addEventListener("input", function (event) {
      if (!event.target.matches("[data-inference-opacity]")) return;
      var card = event.target.closest("[data-smear-id]");
      var overlay = card && card.querySelector("[data-inference-heatmap]");
      if (overlay) overlay.style.opacity = String(Number(event.target.value) / 100);
    });
    section.addEventListener("change", function (event) {
      if (event.target.matches("[data-inference-version-select]")) {
        section.setAttribute("data-version", event.target.value);
        self.refresh();
      }
    });
    section.addEventListener("submit", function (event) {
      var form = event.target.closest("[data-inference-action]");
      if (!form || !window.fetch) return;
      event.preventDefault();
      self.send(form);
    });
    if (section.getAttribute("data-pending") === "true") this.schedule(this.pollMs);
  }

  Panel.prototype.jsonUrl = function () {
    var version = this.section.getAttribute("data-version");
    return this.url + (version ? "?version=" + encodeURIComponent(version) : "");
  };

  Panel.prototype.schedule = function (delay) {
    var self = this;
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(function () { self.refresh(); }, delay);
  };

  Panel.prototype.apply = function (data) {
    render(this.section, data);
    this.failures = 0;
    if (data.pending) this.schedule(data.poll_interval_ms || this.pollMs);
  };

  Panel.prototype.refresh = function () {
    var self = this;
    if (document.hidden) { this.schedule(this.pollMs); return; } // no polling in a background tab
    fetch(this.jsonUrl(), {
      // A background refresh: not user activity for the session's inactivity timeout.
      headers: {Accept: "application/json", "X-Telediag-Background": "1"}, credentials: "same-origin", cache: "no-store"
    })
      .then(function (response) {
        if (response.status === 401 || response.status === 403 || response.status === 404) {
          throw Object.assign(new Error("stop"), {fatal: true});
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) { self.apply(data); })
      .catch(function (error) {
        if (error && error.fatal) return; // signed out or no longer visible: stop polling
        self.failures += 1;
        self.schedule(Math.min(MAX_BACKOFF_MS, self.pollMs * Math.pow(2, self.failures)));
      });
  };

  Panel.prototype.send = function (form) {
    var self = this;
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: {Accept: "application/json", "X-CSRFToken": this.section.getAttribute("data-csrf-token") || ""}
    }).then(function (response) {
      return response.json().then(function (payload) { return {ok: response.ok, payload: payload}; });
    }).then(function (reply) {
      if (!reply.ok) {
        var message = reply.payload && reply.payload.error ? reply.payload.error.message : "The request failed.";
        window.alert(message);
        if (button) button.disabled = false;
        return;
      }
      if (reply.payload.analysis && reply.payload.analysis.case) self.apply(reply.payload.analysis);
      else self.refresh();
    }).catch(function () {
      if (button) button.disabled = false;
      window.alert("The request could not be sent. Check the connection and try again.");
    });
  };

  function start() {
    // Server-rendered bars carry their width as data (no inline style under the Content-Security-Policy).
    document.querySelectorAll("[data-td-width]").forEach(function (node) {
      node.style.width = node.getAttribute("data-td-width") + "%";
    });
    document.querySelectorAll("[data-inference-analysis]").forEach(function (section) {
      if (!section.telediagPanel) section.telediagPanel = new Panel(section);
    });
  }

  window.telediagInference = {start: start, render: render};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
