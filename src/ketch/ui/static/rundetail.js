// Ketch's run graph: draws the ECharts graph whose options are in the element its
// data-run-graph names (its data-options attribute, or the JSON block it is), follows the task list's live updates (the block is
// swapped in by htmx, the chart's colours follow without a reload), and sends a click
// on a task's node to that task's panel (its link: the page works without script).
(function () {
  "use strict";

  function draw(el) {
    if (typeof echarts === "undefined") return;
    var source = document.getElementById(el.dataset.runGraph);
    if (!source) return;
    var chart = echarts.getInstanceByDom(el);
    if (!chart) {
      chart = echarts.init(el, null, { renderer: "svg" });
      chart.on("click", function (params) {
        if (params.dataType === "node" && params.data && params.data.href) {
          window.location.href = params.data.href;
        }
      });
      window.addEventListener("resize", function () { chart.resize(); });
    }
    var options = source.dataset.options || source.textContent;
    chart.setOption(JSON.parse(options), { notMerge: false, lazyUpdate: true });
    el.dataset.graphReady = "1";
  }

  function drawAll() {
    document.querySelectorAll("[data-run-graph]").forEach(draw);
  }

  // deferred before ECharts: draw once every deferred script has run
  if (document.readyState === "complete") drawAll();
  else document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
})();
