/* Acting from an asset's charts (asset_charts.html): upload a CSV file to a sensor
 * with a progress bar, trigger a forecast or a schedule (of a sensor, or of the
 * whole asset) and watch its job to the end; then the charts reload (event
 * "charts:reload") over the job's window, where the result is a series of its own
 * (its data source). The forms work without this script too (they post to pages);
 * it intercepts their submits. POSTs carry the session's CSRF secret (the upload
 * and sensor trigger in X-CSRF-Token; the asset-wide form posts its own fields with
 * Accept: application/json). No inline scripts (CSP).
 */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var QUARTER = 15 * 60e3;

  // Keys that name no field: the whole object, the upload's files (named anyway).
  var UNNAMED = ["_schema", "uploaded-files"];

  // Every message of an error body, each with the field it is about (as the
  // pages' reasons() in gateway/web/acting.py): a 422's message is
  // {location: {field: [texts]}}; list indexes are no names.
  function messages(body) {
    var parts = [];
    (function walk(v, name, depth) {
      if (typeof v === "string") { parts.push(name ? name + ": " + v : v); }
      else if (Array.isArray(v)) { v.forEach(function (item) { walk(item, name, depth); }); }
      else if (v && typeof v === "object") {
        Object.keys(v).forEach(function (k) {
          var named = depth > 0 && UNNAMED.indexOf(k) < 0 && !/^\d+$/.test(k);
          walk(v[k], named ? k : name, depth + 1);
        });
      }
    })(body && (body.message !== undefined ? body.message : body.errors), "", 0);
    return parts;
  }

  function show(box, text, isError, list) {
    box.replaceChildren(document.createTextNode(text));
    box.classList.toggle("error", Boolean(isError));
    if (list && list.length) {
      var ul = document.createElement("ul");
      ul.className = "refused";
      list.forEach(function (item) {
        var li = document.createElement("li");
        li.textContent = item;
        ul.append(li);
      });
      box.append(ul);
    }
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function isoUtc(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      "T" + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":00+00:00";
  }

  function durationMs(text) {
    var m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?)?$/.exec(text);
    return m ? ((+(m[1] || 0)) * 24 + (+(m[2] || 0))) * 3600e3 : 864e5;
  }

  function start() {
    var csrfInput = document.getElementById("act-csrf");
    var uploadForm = document.getElementById("upload-form");
    var jobForm = document.getElementById("job-form");
    if (!csrfInput || !uploadForm || !jobForm) { return; }
    var csrf = csrfInput.value;

    uploadForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var sensorId = document.getElementById("upload-sensor").value;
      var fileInput = document.getElementById("upload-file");
      var progress = document.getElementById("upload-progress");
      var result = document.getElementById("upload-result");
      var file = fileInput.files && fileInput.files[0];
      if (!file) {
        fileInput.setAttribute("aria-invalid", "true");
        show(result, "Choose a CSV file first.", true);
        fileInput.focus();
        return;
      }
      fileInput.removeAttribute("aria-invalid");
      var data = new FormData();
      data.append("uploaded-files", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/dashboard/api/sensors/" + encodeURIComponent(sensorId) + "/upload");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      progress.hidden = false;
      progress.value = 0;
      show(result, "Uploading " + file.name + "…");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { progress.value = Math.round(100 * e.loaded / e.total); }
      });
      xhr.addEventListener("load", function () {
        progress.value = 100;
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        if (xhr.status === 200) {
          var lines = 0;
          file.text().then(function (text) {
            lines = text.split(/\r?\n/).filter(function (l) { return l.trim(); }).length - 1;
          }).finally(function () {
            show(result, "Stored " + file.name + (lines > 0 ? " (" + lines + " rows)" : "") + ": " +
              messages(body).join(" "));
            document.dispatchEvent(new CustomEvent("charts:reload"));
          });
        } else if (xhr.status === 422) {
          show(result, "Nothing was stored; " + file.name + " was refused:", true, messages(body));
        } else {
          show(result, "The upload failed: " + (messages(body).join(" ") || "error " + xhr.status) + ".", true);
        }
      });
      xhr.addEventListener("error", function () {
        show(result, "The upload failed: the server is not reachable.", true);
      });
      xhr.send(data);
    });

    jobForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var sensorId = document.getElementById("job-sensor").value;
      var kind = jobForm.querySelector("input[name=kind]:checked").value;
      var duration = document.getElementById("job-duration").value;
      var result = document.getElementById("job-result");
      var button = jobForm.querySelector("button[type=submit]");
      var from = Math.floor(Date.now() / QUARTER) * QUARTER;
      var until = from + durationMs(duration);
      var body = kind === "schedule"
        ? { start: isoUtc(from), duration: duration, "flex-model": {} }
        : { duration: duration }; // from now, with what is known now
      var path = "/dashboard/api/sensors/" + encodeURIComponent(sensorId) +
        (kind === "schedule" ? "/schedules/trigger" : "/forecasts/trigger");
      button.disabled = true;
      show(result, "Starting the " + kind + "…");
      fetch(path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body)
      }).then(function (r) {
        return r.json().then(function (b) { return { status: r.status, body: b }; },
          function () { return { status: r.status, body: null }; });
      }).then(function (answer) {
        var job = answer.body && (answer.body.job || answer.body.schedule || answer.body.forecast);
        if (answer.status >= 300 || !job) {
          button.disabled = false;
          show(result, "The " + kind + " was refused:", true,
            messages(answer.body).length ? messages(answer.body) : ["error " + answer.status]);
          return;
        }
        show(result, "Job " + job + " accepted; waiting for it…");
        watch(job, kind, result, button, from, until);
      }).catch(function () {
        button.disabled = false;
        show(result, "The server is not reachable.", true);
      });
    });

    var assetForm = document.getElementById("asset-schedule-form");
    if (assetForm) {
      assetForm.addEventListener("submit", function (event) {
        event.preventDefault();
        var result = document.getElementById("asset-schedule-result");
        var button = assetForm.querySelector("button[type=submit]");
        var start = Date.parse(document.getElementById("asset-schedule-start").value);
        var from = isNaN(start) ? Math.floor(Date.now() / QUARTER) * QUARTER : start;
        var until = from + durationMs(document.getElementById("asset-schedule-duration").value);
        button.disabled = true;
        show(result, "Starting the schedule…");
        fetch(assetForm.action, {
          method: "POST",
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          body: new URLSearchParams(new FormData(assetForm))
        }).then(function (r) {
          return r.json().then(function (b) { return { status: r.status, body: b }; },
            function () { return { status: r.status, body: null }; });
        }).then(function (answer) {
          var job = answer.body && answer.body.job;
          if (answer.status >= 300 || !job) {
            button.disabled = false;
            show(result, "The schedule was refused:", true,
              messages(answer.body).length ? messages(answer.body) : ["error " + answer.status]);
            return;
          }
          show(result, "Job " + job + " accepted; waiting for it…");
          watch(job, "schedule", result, button, from, until);
        }).catch(function () {
          button.disabled = false;
          show(result, "The server is not reachable.", true);
        });
      });
    }

    function watch(job, kind, result, button, from, until) {
      fetch("/dashboard/api/jobs/" + encodeURIComponent(job), {
        headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store"
      }).then(function (r) {
        return r.json().then(function (b) { return { status: r.status, body: b }; },
          function () { return { status: r.status, body: null }; });
      }).then(function (answer) {
        var body = answer.body || {};
        if (answer.status === 202) {
          show(result, "Job " + job + ": " + (body.message || body.status) + " (" + body.status + ")");
          setTimeout(function () { watch(job, kind, result, button, from, until); }, POLL_MS);
          return;
        }
        button.disabled = false;
        if (answer.status === 200) {
          show(result, "Job " + job + " finished: " + body.message + " The charts show it now.");
          document.dispatchEvent(new CustomEvent("charts:reload", {
            detail: { start: from - 864e5, end: until }
          }));
        } else {
          show(result, "Job " + job + " failed:", true, messages(body));
        }
      }).catch(function () {
        setTimeout(function () { watch(job, kind, result, button, from, until); }, POLL_MS);
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
