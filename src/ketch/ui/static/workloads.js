// Ketch's dashboard: an InferenceService's request rate and latency, charted from
// samples of its /metrics (read through the dashboard's own route every 2 s; the
// chart shows the last 5 minutes and the numbers are also written as text).
(function () {
  "use strict";
  var EVERY = 2000;
  var KEPT = 150;

  function start(el) {
    if (el.dataset.metricsReady || typeof echarts === "undefined") return;
    el.dataset.metricsReady = "1";
    var source = document.getElementById(el.dataset.metricsChart);
    var chart = echarts.init(el, null, { renderer: "svg" });
    chart.setOption(JSON.parse(source.textContent));
    window.addEventListener("resize", function () { chart.resize(); });
    var summary = el.parentNode.querySelector("[aria-live]");
    var samples = [];
    var timer = null;

    function say(text) { if (summary) summary.textContent = text; }

    function draw() {
      var rate = [], latency = [];
      for (var i = 1; i < samples.length; i++) {
        var a = samples[i - 1], b = samples[i];
        var seconds = b.t - a.t;
        if (seconds <= 0) continue;
        var done = b.latency_count - a.latency_count;
        var at = Math.round(b.t * 1000);
        rate.push([at, Math.max(0, (b.requests - a.requests) / seconds)]);
        latency.push([at, done > 0 ? (1000 * (b.latency_sum - a.latency_sum)) / done : null]);
      }
      chart.setOption({ series: [{ data: rate }, { data: latency }] });
      var last = samples[samples.length - 1];
      var mean = last.latency_count > 0 ? (1000 * last.latency_sum) / last.latency_count : 0;
      var now = rate.length ? rate[rate.length - 1][1] : 0;
      say(last.requests + " requests in all (" + last.errors + " failed), " +
        now.toFixed(2) + " requests/s now, " + mean.toFixed(2) + " ms mean latency");
    }

    function tick() {
      if (!document.body.contains(el)) { clearInterval(timer); return; }
      fetch(el.dataset.metricsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { error: "HTTP " + r.status }; })
        .then(function (sample) {
          if (sample.error) { say("No metrics: " + sample.error); return; }
          samples.push(sample);
          if (samples.length > KEPT) samples.shift();
          draw();
        })
        .catch(function () { say("No metrics: the server did not answer"); });
    }

    tick();
    timer = setInterval(tick, EVERY);
  }

  function all(root) {
    root.querySelectorAll("[data-metrics-chart]").forEach(start);
  }

  // deferred before ECharts' own script: start once every deferred script ran
  document.addEventListener("DOMContentLoaded", function () { all(document); });
  document.addEventListener("htmx:afterSettle", function (event) { all(event.target); });
})();
