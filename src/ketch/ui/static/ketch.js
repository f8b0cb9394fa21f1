// Ketch's dashboard: what its pages need beyond htmx.
(function () {
  "use strict";

  // htmx's writes send JSON (the API server takes no form posts) and the session's
  // CSRF token (its header, as every signed-in page's write must)
  htmx.defineExtension("ketch", {
    onEvent: function (name, event) {
      if (name !== "htmx:configRequest") return true;
      var method = (event.detail.verb || "get").toUpperCase();
      if (method !== "GET") {
        var token = document.querySelector('meta[name="csrf-token"]');
        if (token && token.content) event.detail.headers["X-CSRF-Token"] = token.content;
        event.detail.headers["Content-Type"] = "application/json";
      }
      return true;
    },
    encodeParameters: function (xhr, parameters) {
      var body = {};
      parameters.forEach(function (value, key) { body[key] = value; });
      xhr.overrideMimeType("application/json");
      return JSON.stringify(body);
    }
  });

  function ready(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  // the namespace selector shows its choice at once (its button, without script)
  function autosubmit(root) {
    root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  // charts: an element with data-chart names the JSON block holding its ECharts option
  function charts(root) {
    if (typeof echarts === "undefined") return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.chartReady) return;
      var source = document.getElementById(el.dataset.chart);
      if (!source) return;
      var chart = echarts.init(el, null, { renderer: "svg" });
      chart.setOption(JSON.parse(source.textContent));
      el.dataset.chartReady = "1";
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  // an error's "line N" button puts the editor's cursor on that line
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-goto-line]");
    if (!button) return;
    var form = button.closest("form");
    var text = form && form.querySelector("textarea");
    if (!text) return;
    var line = parseInt(button.dataset.gotoLine, 10);
    var lines = text.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    var end = start + (lines[line - 1] || "").length;
    text.focus();
    text.setSelectionRange(start, end);
    var height = text.scrollHeight / Math.max(lines.length, 1);
    text.scrollTop = Math.max(0, (line - 3) * height);
  });

  // a file input with data-file-into puts the file's text into that field (and its
  // name into data-name-into's), so a form sends it as JSON like any other field
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.dataset || !input.dataset.fileInto || !input.files || !input.files[0]) return;
    var file = input.files[0];
    var target = document.getElementById(input.dataset.fileInto);
    var named = input.dataset.nameInto && document.getElementById(input.dataset.nameInto);
    if (named) named.value = file.name;
    file.text().then(function (text) { if (target) target.value = text; });
  });

  ready(function () {
    autosubmit(document);
    charts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    autosubmit(event.target);
    charts(event.target);
  });
})();
