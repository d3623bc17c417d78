// The hospital page's charts: data from the page's JSON block, drawn by the Chart.js the portal serves.
(function () {
  "use strict";
  var node = document.getElementById("oversight-data");
  if (!node || typeof Chart === "undefined") { return; }
  var data = JSON.parse(node.textContent);
  var days = data.days.map(function (d) { return d.day; });
  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) { canvas.chart = new Chart(canvas, config); }
  }
  function hours(v) { return v === "inf" ? null : v; }
  draw("chart-volume", {type: "bar", data: {labels: days, datasets: [
    {label: "accepted", data: data.days.map(function (d) { return d.volume; }), backgroundColor: "#1f6feb"},
    {label: "rejected", data: data.days.map(function (d) { return d.rejected; }), backgroundColor: "#cf222e"}]},
    options: {animation: false, scales: {x: {stacked: true}, y: {stacked: true}}}});
  draw("chart-lag", {type: "line", data: {labels: days, datasets: [
    {label: "within 24 h (%)", data: data.days.map(function (d) { return d.within_24h === null ? null : 100 * d.within_24h; }), yAxisID: "y"},
    {label: "median lag (h)", data: data.days.map(function (d) { return hours(d.lag_p50_h); }), yAxisID: "h"}]},
    options: {animation: false, scales: {y: {min: 0, max: 100}, h: {position: "right", type: "logarithmic"}}}});
  draw("chart-reasons", {type: "bar", data: {labels: data.reasons.map(function (r) { return r.reason; }),
    datasets: [{label: "resources", data: data.reasons.map(function (r) { return r.n; }), backgroundColor: "#bf8700"}]},
    options: {animation: false, indexAxis: "y"}});
  draw("chart-quality", {type: "line", data: {labels: days, datasets: [
    {label: "completeness (%)", data: data.days.map(function (d) { return d.completeness === null ? null : 100 * d.completeness; })},
    {label: "validity (%)", data: data.days.map(function (d) { return d.validity === null ? null : 100 * d.validity; })}]},
    options: {animation: false, scales: {y: {min: 0, max: 100}}}});
  var adays = data.access.map(function (a) { return a.day; });
  draw("chart-access", {type: "bar", data: {labels: adays, datasets: [
    {label: "reads", data: data.access.map(function (a) { return a.reads; }), backgroundColor: "#1f6feb"},
    {label: "denials", data: data.access.map(function (a) { return a.denials; }), backgroundColor: "#cf222e"},
    {label: "break-glass", data: data.access.map(function (a) { return a.break_glass; }), backgroundColor: "#8250df"}]},
    options: {animation: false}});
  document.body.setAttribute("data-charts", String(document.querySelectorAll("canvas").length));
}());
