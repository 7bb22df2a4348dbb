/* Time helpers shared by the dashboard's sensor page (dashboard.js) and the asset
 * charts (asset_charts.js): load this first; it sets window.flexhostTime.
 * Times are shown in the browser's time zone and sent as aware ISO 8601 datetimes.
 */
(function () {
  "use strict";

  var MINUTE = 60e3;
  var HOUR = 60 * MINUTE;
  var DAY = 24 * HOUR;
  // Read resolutions tried, finest first (each used only if a multiple of the sensor's).
  var STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
    6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 30 * DAY];

  function pad(number, width) {
    return String(number).padStart(width || 2, "0");
  }

  /* 2026-01-15T00:00:00+01:00: an aware datetime in the browser's time zone. */
  function isoLocal(date) {
    var offset = -date.getTimezoneOffset();
    var sign = offset >= 0 ? "+" : "-";
    var abs = Math.abs(offset);
    return pad(date.getFullYear(), 4) + "-" + pad(date.getMonth() + 1) + "-" +
      pad(date.getDate()) + "T" + pad(date.getHours()) + ":" + pad(date.getMinutes()) +
      ":" + pad(date.getSeconds()) + sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  /* The value of a datetime-local input: 2026-01-15T00:00 (local time). */
  function inputValue(date) {
    return isoLocal(date).slice(0, 16);
  }

  function isoDuration(ms) {
    return "PT" + ms / 1000 + "S";
  }

  /* Milliseconds of an ISO 8601 duration such as PT15M or P1DT2H (NaN if other). */
  function parseDuration(text) {
    var match = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(text || "");
    if (!match) {
      return NaN;
    }
    var days = +(match[1] || 0);
    var hours = +(match[2] || 0);
    var minutes = +(match[3] || 0);
    var seconds = +(match[4] || 0);
    return (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000;
  }

  /* The read resolution: the finest step (a multiple of the sensor's) giving at
   * most `points` values over `durationMs` (null: the sensor's own is fine, or the
   * backend picks one for an instantaneous sensor). */
  function chooseResolution(durationMs, sensorMs, points) {
    if (!(sensorMs > 0) || durationMs / sensorMs <= points) {
      return null;
    }
    for (var i = 0; i < STEPS.length; i++) {
      var step = STEPS[i];
      if (step > sensorMs && step % sensorMs === 0 && durationMs / step <= points) {
        return step;
      }
    }
    return sensorMs * Math.ceil(durationMs / sensorMs / points);
  }

  /* The text of a FlexMeasures error body: {"message": "..." | {...}} or {"errors": []}. */
  function messageOf(body) {
    var parts = [];
    (function walk(value) {
      if (typeof value === "string") {
        parts.push(value);
      } else if (Array.isArray(value)) {
        value.forEach(walk);
      } else if (value && typeof value === "object") {
        Object.keys(value).forEach(function (key) { walk(value[key]); });
      }
    })(body && (body.message !== undefined ? body.message : body.errors));
    return parts.join(" ");
  }

  /* The window of a start and an end datetime-local input, {start, end} in ms, or
   * {error} (the wrong input marked aria-invalid). */
  function customWindow(startInput, endInput) {
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

  window.flexhostTime = {
    MINUTE: MINUTE,
    HOUR: HOUR,
    DAY: DAY,
    pad: pad,
    isoLocal: isoLocal,
    inputValue: inputValue,
    isoDuration: isoDuration,
    parseDuration: parseDuration,
    chooseResolution: chooseResolution,
    messageOf: messageOf,
    customWindow: customWindow
  };
})();
