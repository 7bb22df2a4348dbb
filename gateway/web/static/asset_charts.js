/* An asset's charts (asset_charts.html): one uPlot per sensor, stacked, sharing one
 * time axis (zooming or panning one zooms all; the cursor is synced). Each sensor's
 * data comes from /dashboard/api/sensors/<id>/series at a resolution that fits the
 * chart's width (the backend downsamples), all sensors fetched in parallel and drawn
 * as they arrive; one series per data source. When every chart is done, the section
 * gets data-rendered="true" and a "charts-rendered" performance mark.
 * No inline scripts (CSP): the settings are a JSON data block.
 */
(function () {
  "use strict";

  var MINUTE = 60e3;
  var HOUR = 60 * MINUTE;
  var DAY = 24 * HOUR;
  var RANGES = { day: DAY, week: 7 * DAY, month: 30 * DAY, year: 365 * DAY };
  var STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
    6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 30 * DAY];
  var COLORS = { user: "#1f6feb", forecaster: "#8250df", scheduler: "#0d9488" };
  var EXTRA = ["#bf3989", "#9a6700", "#cf222e", "#116329", "#57606a"];

  function pad(n, w) { return String(n).padStart(w || 2, "0"); }

  function isoLocal(date) {
    var offset = -date.getTimezoneOffset();
    var abs = Math.abs(offset);
    return pad(date.getFullYear(), 4) + "-" + pad(date.getMonth() + 1) + "-" +
      pad(date.getDate()) + "T" + pad(date.getHours()) + ":" + pad(date.getMinutes()) +
      ":" + pad(date.getSeconds()) + (offset >= 0 ? "+" : "-") +
      pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  function inputValue(date) { return isoLocal(date).slice(0, 16); }

  function isoDuration(ms) { return "PT" + ms / 1000 + "S"; }

  function parseDuration(text) {
    var m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(text || "");
    if (!m) { return NaN; }
    return (((+(m[1] || 0) * 24 + +(m[2] || 0)) * 60 + +(m[3] || 0)) * 60 + +(m[4] || 0)) * 1000;
  }

  function messageOf(body) {
    var parts = [];
    (function walk(v) {
      if (typeof v === "string") { parts.push(v); }
      else if (Array.isArray(v)) { v.forEach(walk); }
      else if (v && typeof v === "object") { Object.keys(v).forEach(function (k) { walk(v[k]); }); }
    })(body && (body.message !== undefined ? body.message : body.errors));
    return parts.join(" ");
  }

  /* The read resolution: the finest step (a multiple of the sensor's) giving at
   * most `points` values over `duration` (null: the sensor's own is fine). */
  function chooseResolution(duration, sensorMs, points) {
    if (!(sensorMs > 0) || duration / sensorMs <= points) { return null; }
    for (var i = 0; i < STEPS.length; i++) {
      var step = STEPS[i];
      if (step > sensorMs && step % sensorMs === 0 && duration / step <= points) { return step; }
    }
    return sensorMs * Math.ceil(duration / sensorMs / points);
  }

  function start() {
    var section = document.getElementById("asset-charts");
    var configNode = document.getElementById("asset-charts-config");
    if (!section || !configNode) { return; }
    var config = JSON.parse(configNode.textContent);
    var form = document.getElementById("range-form");
    var startInput = document.getElementById("range-start");
    var endInput = document.getElementById("range-end");
    var statusBox = document.getElementById("charts-status");
    var zoomBox = section.querySelector(".zoom");
    var hoverBox = document.getElementById("annotation-hover");
    var annotationBox = document.getElementById("annotations");
    var annotationList = document.getElementById("annotation-list");
    var timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    var timeFormat = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
    });
    var numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
    var plots = {}; // sensor id -> uPlot
    var full = null; // the loaded window, in seconds
    var annotations = [];
    var loads = 0;
    var syncing = false;

    document.querySelectorAll("[data-timezone]").forEach(function (node) {
      node.textContent = timeZone ? " (" + timeZone + ")" : "";
    });

    function setStatus(text, isError) {
      statusBox.textContent = text;
      statusBox.classList.toggle("error", Boolean(isError));
    }

    function rangeValue() {
      var checked = form.querySelector("input[name=range]:checked");
      return checked ? checked.value : "week";
    }

    function chosenWindow() {
      var preset = rangeValue();
      if (Object.prototype.hasOwnProperty.call(RANGES, preset)) {
        var end = Math.ceil(Date.now() / (15 * MINUTE)) * 15 * MINUTE;
        return { start: end - RANGES[preset], end: end };
      }
      var from = new Date(startInput.value).getTime();
      var until = new Date(endInput.value).getTime();
      startInput.removeAttribute("aria-invalid");
      endInput.removeAttribute("aria-invalid");
      if (isNaN(from) || isNaN(until)) {
        (isNaN(from) ? startInput : endInput).setAttribute("aria-invalid", "true");
        return { error: "Enter both a start and an end." };
      }
      if (until <= from) {
        endInput.setAttribute("aria-invalid", "true");
        return { error: "The end must be after the start." };
      }
      return { start: from, end: until };
    }

    function remember() {
      var params = new URLSearchParams();
      params.set("range", rangeValue());
      if (rangeValue() === "custom") {
        params.set("start", startInput.value);
        params.set("end", endInput.value);
      }
      history.replaceState(null, "", location.pathname + "?" + params.toString());
    }

    function itemOf(sensorId) { return document.getElementById("sensor-chart-" + sensorId); }

    function plotWidth(item) {
      return Math.max(item.querySelector(".plot").clientWidth, 240);
    }

    function size(item) {
      var width = plotWidth(item);
      return { width: width, height: Math.round(Math.max(160, Math.min(260, width * 0.3))) };
    }

    /* Every other chart follows a chart's x scale. */
    function follow(u) {
      if (syncing) { return; }
      syncing = true;
      Object.keys(plots).forEach(function (id) {
        var other = plots[id];
        if (other !== u) { other.setScale("x", { min: u.scales.x.min, max: u.scales.x.max }); }
      });
      syncing = false;
      updateZoomButtons();
    }

    function anyPlot() {
      var ids = Object.keys(plots);
      return ids.length ? plots[ids[0]] : null;
    }

    function zoomed() {
      var u = anyPlot();
      return Boolean(u && full && (u.scales.x.min > full.min + 1e-6 || u.scales.x.max < full.max - 1e-6));
    }

    function updateZoomButtons() {
      if (!zoomBox) { return; }
      var z = zoomed();
      zoomBox.querySelector("[data-zoom=reset]").disabled = !z;
      zoomBox.querySelector("[data-zoom=load]").disabled = !z;
    }

    function drawAnnotations(u) {
      if (!annotations.length) { return; }
      var ctx = u.ctx;
      ctx.save();
      ctx.fillStyle = "rgba(212, 167, 44, 0.18)";
      annotations.forEach(function (a) {
        var left = u.valToPos(a.start / 1000, "x", true);
        var right = u.valToPos(a.end / 1000, "x", true);
        var x0 = Math.max(left, u.bbox.left);
        var x1 = Math.min(right, u.bbox.left + u.bbox.width);
        if (x1 > x0) { ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height); }
      });
      ctx.restore();
    }

    function hoverAnnotation(u) {
      var left = u.cursor.left;
      if (left == null || left < 0 || !annotations.length) { return; }
      var at = u.posToVal(left, "x") * 1000;
      var found = annotations.filter(function (a) { return a.start <= at && at < a.end; });
      hoverBox.textContent = found.map(function (a) { return a.text; }).join(" · ");
    }

    function draw(sensor, body, item) {
      var box = item.querySelector(".plot");
      var startMs = Date.parse(body.start);
      var step = parseDuration(body.resolution) || sensor.resolution_ms || MINUTE;
      var series = Array.isArray(body.series) ? body.series : [];
      var length = 0;
      series.forEach(function (s) { length = Math.max(length, (s.values || []).length); });
      var xs = new Array(length);
      for (var i = 0; i < length; i++) { xs[i] = (startMs + i * step) / 1000; }
      var data = [xs];
      var unit = sensor.unit;
      var uSeries = [{}];
      var extra = 0;
      series.forEach(function (s) {
        var kind = s.source.type;
        var color = COLORS[kind] || EXTRA[extra++ % EXTRA.length];
        data.push(s.values);
        var present = 0;
        (s.values || []).forEach(function (v) { if (v != null) { present++; } });
        uSeries.push({
          // A few values among gaps would draw no line: show them as points.
          points: present <= 60 ? { show: true, size: 6 } : {},
          label: s.source.description.indexOf("(" + kind + ")") >= 0
            ? s.source.description : s.source.description + " (" + kind + ")",
          stroke: color,
          width: 2,
          dash: kind === "forecaster" ? [6, 4] : kind === "scheduler" ? [2, 3] : undefined,
          spanGaps: false,
          value: function (u, v) { return v == null ? "–" : numberFormat.format(v) + (unit ? " " + unit : ""); }
        });
      });
      if (plots[sensor.id]) { plots[sensor.id].destroy(); delete plots[sensor.id]; }
      box.replaceChildren();
      var status = item.querySelector(".chart-status");
      if (!series.length) {
        status.textContent = "No data in this range.";
        return;
      }
      status.textContent = "";
      var options = Object.assign(size(item), {
        scales: { x: { time: true, min: full.min, max: full.max } },
        series: uSeries,
        axes: [{}, { label: unit || "value", size: 60 }],
        cursor: {
          sync: { key: "asset-" + config.asset, setSeries: false },
          drag: { x: true, y: false, setScale: true }
        },
        hooks: {
          setScale: [function (u, key) { if (key === "x") { follow(u); } }],
          drawClear: [drawAnnotations],
          setCursor: [hoverAnnotation]
        }
      });
      var plot = new uPlot(options, data, box);
      plots[sensor.id] = plot;
      box.setAttribute("aria-label", "Chart of " + sensor.name + " (" + (unit || "no unit") +
        "), " + series.map(function (s) { return s.source.description; }).join(", ") +
        ", at a resolution of " + body.resolution + ".");
      // A chart drawn after a zoom joins it.
      var other = Object.keys(plots).filter(function (id) { return plots[id] !== plot; })[0];
      if (other) {
        var x = plots[other].scales.x;
        syncing = true;
        plot.setScale("x", { min: x.min, max: x.max });
        syncing = false;
      }
    }

    function loadAnnotations(span) {
      if (!annotationBox) { return Promise.resolve(); }
      var params = new URLSearchParams({
        start: isoLocal(new Date(span.start)), end: isoLocal(new Date(span.end))
      });
      return fetch(config.annotationsUrl + "?" + params.toString(), {
        headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store"
      }).then(function (r) { return r.ok ? r.json() : []; }).then(function (list) {
        annotations = (Array.isArray(list) ? list : []).map(function (a) {
          return { start: a.start, end: a.end, text: (a.content || []).join(" ") };
        });
        annotationList.replaceChildren.apply(annotationList, annotations.map(function (a) {
          var li = document.createElement("li");
          li.textContent = timeFormat.format(a.start) + " – " + timeFormat.format(a.end) + ": " + a.text;
          var button = document.createElement("button");
          button.type = "button";
          button.className = "secondary";
          button.textContent = "Zoom to it";
          button.addEventListener("click", function () {
            var u = anyPlot();
            if (u) { u.setScale("x", { min: a.start / 1000, max: a.end / 1000 }); }
            hoverBox.textContent = a.text;
          });
          li.append(button);
          return li;
        }));
        annotationBox.hidden = !annotations.length;
        Object.keys(plots).forEach(function (id) { plots[id].redraw(false, false); });
      }).catch(function () { annotations = []; });
    }

    function load() {
      var span = chosenWindow();
      if (span.error) { setStatus(span.error, true); return; }
      startInput.value = inputValue(new Date(span.start));
      endInput.value = inputValue(new Date(span.end));
      remember();
      var mine = ++loads;
      section.removeAttribute("data-rendered");
      section.setAttribute("aria-busy", "true");
      full = { min: span.start / 1000, max: span.end / 1000 };
      setStatus("Loading " + config.sensors.length + " charts…");
      var failed = 0;
      var jobs = config.sensors.map(function (sensor) {
        var item = itemOf(sensor.id);
        item.setAttribute("aria-busy", "true");
        var resolution = chooseResolution(span.end - span.start, sensor.resolution_ms, plotWidth(item));
        var step = resolution || (sensor.resolution_ms > 0 ? sensor.resolution_ms : MINUTE);
        var from = Math.floor(span.start / step) * step;
        var until = Math.ceil(span.end / step) * step;
        var params = new URLSearchParams({
          start: isoLocal(new Date(from)), duration: isoDuration(until - from), unit: sensor.unit
        });
        if (resolution) { params.set("resolution", isoDuration(resolution)); }
        var url = config.seriesUrl.replace("{id}", sensor.id) + "?" + params.toString();
        return fetch(url, {
          headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store"
        }).then(function (response) {
          return response.json().then(function (body) { return { response: response, body: body }; },
            function () { return { response: response, body: null }; });
        }).then(function (answer) {
          if (mine !== loads) { return; }
          item.removeAttribute("aria-busy");
          var status = item.querySelector(".chart-status");
          status.classList.remove("error");
          if (!answer.response.ok || !answer.body) {
            failed++;
            status.classList.add("error");
            status.textContent = answer.response.status === 401
              ? "Your session has ended; please log in again."
              : "The data could not be loaded: " + (messageOf(answer.body) || "error " + answer.response.status) + ".";
            return;
          }
          draw(sensor, answer.body, item);
        }).catch(function () {
          if (mine === loads) {
            failed++;
            item.removeAttribute("aria-busy");
            item.querySelector(".chart-status").textContent = "The data could not be loaded: the server is not reachable.";
          }
        });
      });
      jobs.push(loadAnnotations(span));
      Promise.all(jobs).then(function () {
        if (mine !== loads) { return; }
        section.removeAttribute("aria-busy");
        setStatus(failed ? failed + " of " + config.sensors.length + " charts could not be loaded." :
          "Showing " + timeFormat.format(span.start) + " to " + timeFormat.format(span.end) +
          (timeZone ? " (" + timeZone + ")" : "") + ".", failed > 0);
        updateZoomButtons();
        section.setAttribute("data-rendered", "true");
        if (performance.mark) { performance.mark("charts-rendered"); }
      });
    }

    if (zoomBox) {
      zoomBox.addEventListener("click", function (event) {
        var button = event.target.closest("button[data-zoom]");
        var u = anyPlot();
        if (!button || !u || !full) { return; }
        var x = u.scales.x;
        var middle = (x.min + x.max) / 2;
        var half = (x.max - x.min) / 2;
        var action = button.dataset.zoom;
        if (action === "in") { u.setScale("x", { min: middle - half / 2, max: middle + half / 2 }); }
        else if (action === "out") {
          u.setScale("x", { min: Math.max(full.min, middle - half * 2), max: Math.min(full.max, middle + half * 2) });
        } else if (action === "left" || action === "right") {
          var shift = (action === "left" ? -1 : 1) * half;
          u.setScale("x", { min: x.min + shift, max: x.max + shift });
        } else if (action === "reset") { u.setScale("x", { min: full.min, max: full.max }); }
        else if (action === "load") {
          form.querySelector("input[name=range][value=custom]").checked = true;
          startInput.value = inputValue(new Date(Math.floor(x.min / 60) * MINUTE));
          endInput.value = inputValue(new Date(Math.ceil(x.max / 60) * MINUTE));
          load();
        }
      });
    }

    [startInput, endInput].forEach(function (input) {
      input.addEventListener("input", function () {
        form.querySelector("input[name=range][value=custom]").checked = true;
      });
    });

    form.addEventListener("submit", function (event) { event.preventDefault(); load(); });

    if (typeof ResizeObserver === "function") {
      new ResizeObserver(function () {
        Object.keys(plots).forEach(function (id) {
          var item = itemOf(id);
          var next = size(item);
          if (plots[id].width !== next.width) { plots[id].setSize(next); }
        });
      }).observe(section);
    }

    document.addEventListener("charts:reload", function (event) {
      var span = event.detail;
      if (span && span.start && span.end) {
        form.querySelector("input[name=range][value=custom]").checked = true;
        startInput.value = inputValue(new Date(span.start));
        endInput.value = inputValue(new Date(span.end));
      }
      load();
    });

    if (!config.sensors.length) {
      section.setAttribute("data-rendered", "true");
      return;
    }
    if (typeof uPlot !== "function") {
      setStatus("The chart library did not load; please reload the page.", true);
      return;
    }
    load();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
