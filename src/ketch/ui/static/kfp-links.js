// The links kfp.Client prints point at the KFP UI's routes in the URL's fragment
// (/#/runs/details/<id>), which never reaches the server: send the browser to the
// matching page of Ketch's dashboard.
(function () {
  "use strict";
  var routes = [
    [/^#\/runs\/details\/([^/?#]+)/, function (m) { return "/ui/runs/" + m[1]; }],
    [/^#\/experiments\/details\/([^/?#]+)/, function (m) { return "/ui/experiments/" + m[1]; }],
    [/^#\/pipelines\/details\/([^/?#]+)\/version\/([^/?#]+)/, function (m) {
      return "/ui/pipelines/" + m[1] + "#version-" + m[2];
    }],
    [/^#\/pipelines\/details\/([^/?#]+)/, function (m) { return "/ui/pipelines/" + m[1]; }],
    [/^#\/runs\/?$/, function () { return "/ui/runs"; }],
    [/^#\/experiments\/?$/, function () { return "/ui/experiments"; }],
    [/^#\/pipelines\/?$/, function () { return "/ui/pipelines"; }]
  ];
  var hash = window.location.hash;
  for (var i = 0; i < routes.length; i++) {
    var found = routes[i][0].exec(hash);
    if (found) {
      var parts = found.slice(1).map(encodeURIComponent);
      window.location.replace(routes[i][1]([found[0]].concat(parts)));
      return;
    }
  }
})();
