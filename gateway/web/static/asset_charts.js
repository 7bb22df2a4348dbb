/* An asset's charts (asset_charts.html): one uPlot per chart, stacked, sharing one
 * time axis (zooming or panning one zooms all; the cursor is synced). A chart draws
 * one sensor, or a group of the asset's `sensors_to_show` (its sensors as distinct
 * series, one y axis per unit, a legend). Each sensor's data comes from
 * /dashboard/api/sensors/<id>/series at a resolution that fits the chart's width
 * (the backend downsamples), all sensors fetched in parallel and each chart drawn
 * when its sensors have arrived; one series per sensor and data source. The asset's
 * and account's annotations shade every chart; a sensor's own annotations are
 * marked on its chart only (another colour, listed under it). When every chart is
 * done, the section gets data-rendered="true" and a "charts-rendered" performance
 * mark. No inline scripts (CSP): the settings are a JSON data block; the time
 * helpers come from timekit.js.
 */
(function () {
  "use strict";

  var time = window.flexhostTime; // timekit.js, loaded first
  var MINUTE = time.MINUTE;
  var DAY = time.DAY;
  var RANGES = { day: DAY, week: 7 * DAY, month: 30 * DAY, year: 365 * DAY };
  var COLORS = { user: "#1f6feb", forecaster: "#8250df", scheduler: "#0d9488" };
  var EXTRA = ["#bf3989", "#9a6700", "#cf222e", "#116329", "#57606a"];
  // A group's sensors: one colour each (its sources told apart by dashes).
  var SENSOR_COLORS = ["#1f6feb", "#cf222e", "#116329", "#9a6700", "#8250df", "#bf3989",
    "#0d9488", "#57606a"];
  var isoLocal = time.isoLocal;
  var inputValue = time.inputValue;
  var isoDuration = time.isoDuration;
  var parseDuration = time.parseDuration;
  var messageOf = time.messageOf;
  var chooseResolution = time.chooseResolution;

  function getJson(url) {
    return fetch(url, {
      headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store"
    }).then(function (response) {
      return response.json().then(function (body) { return { response: response, body: body }; },
        function () { return { response: response, body: null }; });
    });
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
    var plots = {}; // chart key -> uPlot
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
      return time.customWindow(startInput, endInput);
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

    var sensorsById = {};
    config.sensors.forEach(function (sensor) { sensorsById[sensor.id] = sensor; });
    var charts = (config.charts && config.charts.length ? config.charts : config.sensors.map(function (s) {
      return { key: "sensor-chart-" + s.id, sensors: [s.id] };
    })).map(function (chart) {
      return {
        key: chart.key,
        sensors: chart.sensors.map(function (id) { return sensorsById[id]; }).filter(Boolean),
        notes: [] // the chart's sensors' own annotations
      };
    });

    function itemOf(key) { return document.getElementById(key); }

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
      Object.keys(plots).forEach(function (key) {
        var other = plots[key];
        if (other !== u) { other.setScale("x", { min: u.scales.x.min, max: u.scales.x.max }); }
      });
      syncing = false;
      updateZoomButtons();
    }

    function anyPlot() {
      var keys = Object.keys(plots);
      return keys.length ? plots[keys[0]] : null;
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

    /* Bands: the asset's and account's annotations over the whole height (amber);
     * the sensors' own in violet, edged, over the upper half. */
    function shade(u, list, fill, edge, part) {
      var ctx = u.ctx;
      ctx.save();
      ctx.fillStyle = fill;
      ctx.strokeStyle = edge || fill;
      ctx.lineWidth = 2;
      list.forEach(function (a) {
        var left = u.valToPos(a.start / 1000, "x", true);
        var right = u.valToPos(a.end / 1000, "x", true);
        var x0 = Math.max(left, u.bbox.left);
        var x1 = Math.min(right, u.bbox.left + u.bbox.width);
        var height = u.bbox.height * part;
        if (x1 > x0) {
          ctx.fillRect(x0, u.bbox.top, x1 - x0, height);
          if (edge) { ctx.strokeRect(x0, u.bbox.top, x1 - x0, height); }
        }
      });
      ctx.restore();
    }

    function drawAnnotations(chart) {
      return function (u) {
        if (annotations.length) { shade(u, annotations, "rgba(212, 167, 44, 0.18)", null, 1); }
        if (chart.notes.length) {
          shade(u, chart.notes, "rgba(130, 80, 223, 0.16)", "rgba(130, 80, 223, 0.7)", 0.5);
        }
      };
    }

    function hoverAnnotation(chart) {
      return function (u) {
        var left = u.cursor.left;
        if (left == null || left < 0 || !(annotations.length || chart.notes.length)) { return; }
        var at = u.posToVal(left, "x") * 1000;
        var found = chart.notes.concat(annotations).filter(function (a) { return a.start <= at && at < a.end; });
        hoverBox.textContent = found.map(function (a) { return a.text; }).join(" · ");
      };
    }

    function annotationItem(a) {
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
    }

    function annotationsOf(list, prefix) {
      return (Array.isArray(list) ? list : []).map(function (a) {
        return { start: a.start, end: a.end, text: prefix + (a.content || []).join(" ") };
      });
    }

    function sourceLabel(s) {
      var kind = s.source.type;
      return s.source.description.indexOf("(" + kind + ")") >= 0
        ? s.source.description : s.source.description + " (" + kind + ")";
    }

    /* answers: per sensor of the chart, its series body (or null: not loaded). */
    function draw(chart, answers, item) {
      var box = item.querySelector(".plot");
      var several = chart.sensors.length > 1;
      var units = [];
      chart.sensors.forEach(function (sensor) {
        if (units.indexOf(sensor.unit) < 0) { units.push(sensor.unit); }
      });
      var tables = [];
      var uSeries = [{}];
      var described = [];
      var extra = 0;
      chart.sensors.forEach(function (sensor, index) {
        var body = answers[index];
        if (!body) { return; }
        var startMs = Date.parse(body.start);
        var step = parseDuration(body.resolution) || sensor.resolution_ms || MINUTE;
        var series = Array.isArray(body.series) ? body.series : [];
        if (!series.length) { return; }
        var length = 0;
        series.forEach(function (s) { length = Math.max(length, (s.values || []).length); });
        var xs = new Array(length);
        for (var i = 0; i < length; i++) { xs[i] = (startMs + i * step) / 1000; }
        var table = [xs];
        var unit = sensor.unit;
        series.forEach(function (s) {
          var kind = s.source.type;
          var color = several ? SENSOR_COLORS[index % SENSOR_COLORS.length]
            : COLORS[kind] || EXTRA[extra++ % EXTRA.length];
          var values = (s.values || []).slice();
          while (values.length < length) { values.push(null); }
          table.push(values);
          var present = 0;
          values.forEach(function (v) { if (v != null) { present++; } });
          uSeries.push({
            // A few values among gaps would draw no line: show them as points.
            points: present <= 60 ? { show: true, size: 6 } : {},
            label: several ? sensor.name + " (" + (unit || "no unit") + "), " + sourceLabel(s) : sourceLabel(s),
            stroke: color,
            width: 2,
            scale: units.length > 1 ? "u" + units.indexOf(unit) : "y",
            dash: kind === "forecaster" ? [6, 4] : kind === "scheduler" ? [2, 3] : undefined,
            spanGaps: false,
            value: function (u, v) { return v == null ? "–" : numberFormat.format(v) + (unit ? " " + unit : ""); }
          });
          described.push(several ? sensor.name + ": " + s.source.description : s.source.description);
        });
        tables.push(table);
      });
      if (plots[chart.key]) { plots[chart.key].destroy(); delete plots[chart.key]; }
      box.replaceChildren();
      var status = item.querySelector(".chart-status");
      if (!tables.length) {
        if (!status.classList.contains("error")) { status.textContent = "No data in this range."; }
        return;
      }
      var data = tables.length === 1 ? tables[0] : uPlot.join(tables);
      var axes = [{}];
      var scales = { x: { time: true, min: full.min, max: full.max } };
      if (units.length > 1) {
        units.forEach(function (unit, i) {
          scales["u" + i] = {};
          axes.push({ scale: "u" + i, label: unit || "value", size: 60, side: i === 0 ? 3 : 1,
            grid: { show: i === 0 } });
        });
      } else {
        axes.push({ label: units[0] || "value", size: 60 });
      }
      var options = Object.assign(size(item), {
        scales: scales,
        series: uSeries,
        axes: axes,
        cursor: {
          sync: { key: "asset-" + config.asset, setSeries: false },
          drag: { x: true, y: false, setScale: true }
        },
        hooks: {
          setScale: [function (u, key) { if (key === "x") { follow(u); } }],
          drawClear: [drawAnnotations(chart)],
          setCursor: [hoverAnnotation(chart)]
        }
      });
      var plot = new uPlot(options, data, box);
      plots[chart.key] = plot;
      var resolutions = answers.filter(Boolean).map(function (b) { return b.resolution; });
      box.setAttribute("aria-label", "Chart of " + chart.sensors.map(function (s) {
        return s.name + " (" + (s.unit || "no unit") + ")";
      }).join(", ") + ", " + described.join(", ") + ", at a resolution of " +
        resolutions.filter(function (r, i) { return resolutions.indexOf(r) === i; }).join(", ") + ".");
      // A chart drawn after a zoom joins it.
      var other = Object.keys(plots).filter(function (key) { return plots[key] !== plot; })[0];
      if (other) {
        var x = plots[other].scales.x;
        syncing = true;
        plot.setScale("x", { min: x.min, max: x.max });
        syncing = false;
      }
    }

    function annotationParams(span) {
      return new URLSearchParams({
        start: isoLocal(new Date(span.start)), end: isoLocal(new Date(span.end))
      }).toString();
    }

    function loadAnnotations(span) {
      if (!annotationBox) { return Promise.resolve(); }
      return getJson(config.annotationsUrl + "?" + annotationParams(span)).then(function (answer) {
        annotations = annotationsOf(answer.response.ok ? answer.body : [], "");
        annotationList.replaceChildren.apply(annotationList, annotations.map(annotationItem));
        annotationBox.hidden = !annotations.length;
        Object.keys(plots).forEach(function (key) { plots[key].redraw(false, false); });
      }).catch(function () { annotations = []; });
    }

    /* The chart's sensors' own annotations: listed under it, marked on it. */
    function loadSensorNotes(chart, item, span) {
      if (!config.sensorAnnotationsUrl) { return Promise.resolve(); }
      var several = chart.sensors.length > 1;
      return Promise.all(chart.sensors.map(function (sensor) {
        var url = config.sensorAnnotationsUrl.replace("{id}", sensor.id) + "?" + annotationParams(span);
        return getJson(url).then(function (answer) {
          return annotationsOf(answer.response.ok ? answer.body : [], several ? sensor.name + ": " : "");
        }, function () { return []; });
      })).then(function (lists) {
        chart.notes = [].concat.apply([], lists);
        var box = item.querySelector(".sensor-annotations");
        if (box) {
          var list = box.querySelector("ul");
          list.replaceChildren.apply(list, chart.notes.map(annotationItem));
          box.hidden = !chart.notes.length;
        }
        if (plots[chart.key]) { plots[chart.key].redraw(false, false); }
      });
    }

    function loadSeries(sensor, item, span) {
      var resolution = chooseResolution(span.end - span.start, sensor.resolution_ms, plotWidth(item));
      var step = resolution || (sensor.resolution_ms > 0 ? sensor.resolution_ms : MINUTE);
      var from = Math.floor(span.start / step) * step;
      var until = Math.ceil(span.end / step) * step;
      var params = new URLSearchParams({
        start: isoLocal(new Date(from)), duration: isoDuration(until - from), unit: sensor.unit
      });
      if (resolution) { params.set("resolution", isoDuration(resolution)); }
      return getJson(config.seriesUrl.replace("{id}", sensor.id) + "?" + params.toString());
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
      setStatus("Loading " + charts.length + " charts…");
      var failed = 0;
      var jobs = charts.map(function (chart) {
        var item = itemOf(chart.key);
        item.setAttribute("aria-busy", "true");
        var notes = loadSensorNotes(chart, item, span);
        var series = Promise.all(chart.sensors.map(function (sensor) {
          return loadSeries(sensor, item, span).catch(function () { return null; });
        })).then(function (answers) {
          if (mine !== loads) { return; }
          item.removeAttribute("aria-busy");
          var status = item.querySelector(".chart-status");
          status.classList.remove("error");
          status.textContent = "";
          var problems = [];
          var bodies = answers.map(function (answer, index) {
            var sensor = chart.sensors[index];
            if (!answer) {
              problems.push((chart.sensors.length > 1 ? sensor.name + ": " : "") + "the server is not reachable");
              return null;
            }
            if (!answer.response.ok || !answer.body) {
              problems.push((chart.sensors.length > 1 ? sensor.name + ": " : "") + (answer.response.status === 401
                ? "your session has ended; please log in again"
                : messageOf(answer.body) || "error " + answer.response.status));
              return null;
            }
            return answer.body;
          });
          if (problems.length) {
            failed++;
            status.classList.add("error");
            status.textContent = "The data could not be loaded: " + problems.join("; ") + ".";
          }
          draw(chart, bodies, item);
        });
        return Promise.all([series, notes]);
      });
      jobs.push(loadAnnotations(span));
      Promise.all(jobs).then(function () {
        if (mine !== loads) { return; }
        section.removeAttribute("aria-busy");
        setStatus(failed ? failed + " of " + charts.length + " charts could not be loaded." :
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
        Object.keys(plots).forEach(function (key) {
          var next = size(itemOf(key));
          if (plots[key].width !== next.width) { plots[key].setSize(next); }
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

    if (!charts.length) {
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
