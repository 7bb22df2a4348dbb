/* The sensor page of the dashboard: reads the chosen window from the form, fetches
 * the sensor's data as JSON from /dashboard/api/sensors/<id>/data (the session
 * cookie authenticates) and draws it with uPlot, plus a text summary and a table.
 * Parameters come from data- attributes of #chart (no inline scripts: CSP).
 * Times are shown in the browser's time zone and sent as aware ISO 8601 datetimes
 * (the helpers of timekit.js).
 */
(function () {
  "use strict";

  var MAX_POINTS = 5000; // coarser read resolutions beyond this many values
  var TABLE_ROWS = 1000;
  var time = window.flexhostTime; // timekit.js, loaded first
  var MINUTE = time.MINUTE;
  var DAY = time.DAY;
  var PRESETS = { "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY };
  var isoLocal = time.isoLocal;
  var inputValue = time.inputValue;
  var isoDuration = time.isoDuration;
  var parseDuration = time.parseDuration;
  var messageOf = time.messageOf;

  /* A read resolution giving at most MAX_POINTS values (null: the sensor's own). */
  function chooseResolution(durationMs, sensorMs) {
    return time.chooseResolution(durationMs, sensorMs, MAX_POINTS);
  }

  function start() {
    // The examples name this very origin (the server may not know its port).
    document.querySelectorAll("[data-origin]").forEach(function (node) {
      node.textContent = location.origin;
    });
    var chartBox = document.getElementById("chart");
    var form = document.getElementById("window-form");
    if (!chartBox || !form) {
      return;
    }
    var section = document.getElementById("chart-section");
    var statusBox = document.getElementById("chart-status");
    var summaryBox = document.getElementById("chart-summary");
    var emptyBox = document.getElementById("chart-empty");
    var tableBox = document.getElementById("chart-table-box");
    var tableBody = document.querySelector("#chart-table tbody");
    var tableNote = document.getElementById("chart-table-note");
    var zoomBox = section.querySelector(".zoom");
    var helpBox = document.getElementById("chart-help");
    var startInput = document.getElementById("window-start");
    var endInput = document.getElementById("window-end");
    var settings = chartBox.dataset;
    var unit = settings.unit || "";
    var sensorMs = Number(settings.resolutionMs) || 0;
    var timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    var timeFormat = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
    });
    var numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });
    var meanFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
    var plot = null;
    var full = null; // the whole window's x range, in seconds
    var loads = 0;

    document.querySelectorAll("[data-timezone]").forEach(function (node) {
      node.textContent = timeZone ? " (" + timeZone + ")" : "";
    });

    function withUnit(value, format) {
      return (format || numberFormat).format(value) + (unit ? " " + unit : "");
    }

    function setStatus(text, isError, link) {
      statusBox.textContent = text;
      statusBox.classList.toggle("error", Boolean(isError));
      if (link) {
        var anchor = document.createElement("a");
        anchor.href = link.href;
        anchor.textContent = link.text;
        statusBox.append(" ", anchor);
      }
    }

    function presetValue() {
      var checked = form.querySelector("input[name=preset]:checked");
      return checked ? checked.value : "24h";
    }

    /* The chosen window as epoch ms, or an error text. */
    function chosenWindow() {
      var preset = presetValue();
      if (Object.prototype.hasOwnProperty.call(PRESETS, preset)) {
        var end = Date.now();
        return { start: end - PRESETS[preset], end: end };
      }
      return time.customWindow(startInput, endInput);
    }

    function remember() {
      var params = new URLSearchParams();
      var preset = presetValue();
      params.set("preset", preset);
      if (preset === "custom") {
        params.set("start", startInput.value);
        params.set("end", endInput.value);
      }
      history.replaceState(null, "", location.pathname + "?" + params.toString());
    }

    function clear() {
      if (plot) {
        plot.destroy();
        plot = null;
      }
      full = null;
      chartBox.hidden = true;
      zoomBox.hidden = true;
      helpBox.hidden = true;
      emptyBox.hidden = true;
      tableBox.hidden = true;
      summaryBox.textContent = "";
      tableBody.replaceChildren();
    }

    function load() {
      var span = chosenWindow();
      if (span.error) {
        setStatus(span.error, true);
        return;
      }
      var resolution = chooseResolution(span.end - span.start, sensorMs);
      // Whole steps, aligned as the backend stores events (to the epoch).
      var step = resolution || (sensorMs > 0 ? sensorMs : MINUTE);
      var from = Math.floor(span.start / step) * step;
      var until = Math.ceil(span.end / step) * step;
      startInput.value = inputValue(new Date(from));
      endInput.value = inputValue(new Date(until));
      remember();
      var params = new URLSearchParams({
        start: isoLocal(new Date(from)),
        duration: isoDuration(until - from),
        unit: unit
      });
      if (resolution) {
        params.set("resolution", isoDuration(resolution));
      }
      var mine = ++loads;
      section.setAttribute("aria-busy", "true");
      setStatus("Loading data…");
      fetch(settings.dataUrl + "?" + params.toString(), {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store"
      }).then(function (response) {
        return response.json().then(
          function (body) { return { response: response, body: body }; },
          function () { return { response: response, body: null }; }
        );
      }).then(function (answer) {
        if (mine !== loads) {
          return;
        }
        section.removeAttribute("aria-busy");
        clear();
        if (answer.response.status === 401) {
          setStatus("Your session has ended.", true,
            { href: settings.loginUrl, text: "Log in again" });
        } else if (answer.response.status === 403) {
          setStatus("This sensor belongs to another account; its data is not yours to see.", true);
        } else if (!answer.response.ok || !answer.body) {
          setStatus("The data could not be loaded: " +
            (messageOf(answer.body) || "error " + answer.response.status) + ".", true);
        } else {
          show(answer.body);
        }
      }).catch(function () {
        if (mine === loads) {
          section.removeAttribute("aria-busy");
          setStatus("The data could not be loaded: the server is not reachable.", true);
        }
      });
    }

    function show(body) {
      var values = Array.isArray(body.values) ? body.values : [];
      var startMs = Date.parse(body.start);
      var step = parseDuration(body.resolution);
      if (!(step > 0)) {
        step = values.length ? parseDuration(body.duration) / values.length : 0;
      }
      var xs = [];
      var ys = [];
      var present = [];
      values.forEach(function (value, index) {
        var at = startMs + index * step;
        var y = typeof value === "number" && isFinite(value) ? value : null;
        xs.push(at / 1000);
        ys.push(y);
        if (y !== null) {
          present.push([at, y]);
        }
      });
      if (isNaN(startMs)) {
        setStatus("The data could not be read.", true);
        return;
      }
      if (!present.length) {
        setStatus("No data in this window.");
        emptyBox.hidden = false;
        return;
      }
      setStatus(present.length === 1 ? "1 value shown." : present.length + " values shown.");
      summarize(values.length, present, step);
      fillTable(present);
      draw(xs, ys);
    }

    function summarize(count, present, step) {
      var min = Infinity;
      var max = -Infinity;
      var sum = 0;
      present.forEach(function (point) {
        min = Math.min(min, point[1]);
        max = Math.max(max, point[1]);
        sum += point[1];
      });
      var first = present[0][0];
      var last = present[present.length - 1][0] + step;
      var text = present.length + " of " + count + " values have data, from " +
        timeFormat.format(first) + " to " + timeFormat.format(last) +
        (timeZone ? " (" + timeZone + ")" : "") + ". Lowest " + withUnit(min) +
        ", highest " + withUnit(max) + ", mean " + withUnit(sum / present.length, meanFormat) + ".";
      summaryBox.textContent = text;
      chartBox.setAttribute("aria-label", "Chart of " + settings.sensorName + ": " + text);
    }

    function fillTable(present) {
      var rows = present.slice(0, TABLE_ROWS).map(function (point) {
        var row = document.createElement("tr");
        var time = document.createElement("td");
        var value = document.createElement("td");
        time.textContent = timeFormat.format(point[0]);
        value.textContent = numberFormat.format(point[1]);
        row.append(time, value);
        return row;
      });
      tableBody.replaceChildren.apply(tableBody, rows);
      tableNote.textContent = present.length > TABLE_ROWS
        ? "The first " + TABLE_ROWS + " of " + present.length + " values; the API has them all."
        : "";
      tableBox.hidden = false;
    }

    function size() {
      var width = Math.max(chartBox.clientWidth, 240);
      return { width: width, height: Math.round(Math.max(220, Math.min(420, width * 0.55))) };
    }

    function zoomed() {
      var scale = plot && plot.scales.x;
      return Boolean(scale && full && (scale.min > full.min || scale.max < full.max));
    }

    function updateZoomButtons() {
      var isZoomed = zoomed();
      zoomBox.querySelector("[data-zoom=reset]").disabled = !isZoomed;
      zoomBox.querySelector("[data-zoom=load]").disabled = !isZoomed;
    }

    function draw(xs, ys) {
      var styles = getComputedStyle(document.documentElement);
      var primary = styles.getPropertyValue("--primary").trim() || "#1f6feb";
      var first = xs[0];
      var last = xs[xs.length - 1];
      full = { min: first, max: last > first ? last : first + 1 };
      chartBox.hidden = false;
      var options = Object.assign(size(), {
        scales: { x: { time: true } },
        series: [
          {},
          {
            label: settings.sensorName + (unit ? " (" + unit + ")" : ""),
            stroke: primary,
            width: 2,
            spanGaps: false,
            value: function (u, value) { return value == null ? "–" : withUnit(value); }
          }
        ],
        axes: [
          {},
          { label: unit || "value", size: 64 }
        ],
        cursor: { drag: { x: true, y: false, setScale: true } },
        hooks: { setScale: [function (u, key) { if (key === "x") { updateZoomButtons(); } }] }
      });
      plot = new uPlot(options, [xs, ys], chartBox);
      zoomBox.hidden = false;
      helpBox.hidden = false;
      updateZoomButtons();
    }

    zoomBox.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-zoom]");
      if (!button || !plot || !full) {
        return;
      }
      var scale = plot.scales.x;
      var middle = (scale.min + scale.max) / 2;
      var half = (scale.max - scale.min) / 2;
      var action = button.dataset.zoom;
      if (action === "in") {
        plot.setScale("x", { min: middle - half / 2, max: middle + half / 2 });
      } else if (action === "out") {
        plot.setScale("x", {
          min: Math.max(full.min, middle - half * 2),
          max: Math.min(full.max, middle + half * 2)
        });
      } else if (action === "reset") {
        plot.setScale("x", { min: full.min, max: full.max });
      } else if (action === "load") {
        form.querySelector("input[name=preset][value=custom]").checked = true;
        startInput.value = inputValue(new Date(Math.floor(scale.min / 60) * MINUTE));
        endInput.value = inputValue(new Date(Math.ceil(scale.max / 60) * MINUTE));
        load();
      }
    });

    [startInput, endInput].forEach(function (input) {
      input.addEventListener("input", function () {
        form.querySelector("input[name=preset][value=custom]").checked = true;
      });
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      load();
    });

    if (typeof ResizeObserver === "function") {
      var lastWidth = 0;
      new ResizeObserver(function () {
        var next = size();
        if (plot && next.width !== lastWidth) {
          lastWidth = next.width;
          plot.setSize(next);
        }
      }).observe(chartBox);
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
