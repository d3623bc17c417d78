// The notifiable-disease charts: one per disease, ISO weeks across, a line per district.
// A withheld cell is a gap (null, never joined across) and a grey ✕ at the foot of its week, whose tooltip names
// the districts and the reasons; a week with no row had no case and is drawn at 0.
(function () {
  "use strict";
  var node = document.getElementById("notifiable-data");
  if (!node || typeof Chart === "undefined") { return; }
  var data = JSON.parse(node.textContent);
  var rate = data.measure === "rate";
  var colours = ["#1f6feb", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#0969da", "#bc4c00", "#6e7781"];
  var drawn = 0;
  data.diseases.forEach(function (disease) {
    var canvas = document.getElementById("chart-" + disease.id);
    if (!canvas) { return; }
    var districts = (data.districts || []).slice();
    disease.rows.forEach(function (r) { if (districts.indexOf(r.district) < 0) { districts.push(r.district); } });
    districts.sort();
    var key = rate ? "rate_suppressed" : "suppressed";
    var withheld = {};
    disease.rows.forEach(function (r) {
      if (r[key]) { (withheld[r.week] = withheld[r.week] || []).push(r.district + " (" + r[key] + ")"); }
    });
    var datasets = districts.map(function (district, i) {
      var cells = {};
      disease.rows.forEach(function (r) { if (r.district === district) { cells[r.week] = r; } });
      return {
        label: district,
        borderColor: colours[i % colours.length],
        backgroundColor: colours[i % colours.length],
        spanGaps: false,
        data: data.weeks.map(function (w) {
          var cell = cells[w];
          if (!cell) { return 0; }
          return rate ? cell.rate_per_100000 : cell.count;
        })
      };
    });
    datasets.push({
      label: canvas.getAttribute("data-withheld-label") || "withheld",
      withheld: true,
      showLine: false,
      pointStyle: "crossRot",
      pointRadius: 8,
      pointBorderWidth: 2,
      borderColor: "#6e7781",
      backgroundColor: "#6e7781",
      data: data.weeks.map(function (w) { return withheld[w] ? 0 : null; })
    });
    canvas.chart = new Chart(canvas, {type: "line", data: {labels: data.weeks, datasets: datasets},
      options: {animation: false, scales: {y: {beginAtZero: true}},
        plugins: {legend: {position: "bottom", labels: {usePointStyle: true}}, tooltip: {callbacks: {label: function (ctx) {
          if (ctx.dataset.withheld) { return ctx.dataset.label + ": " + withheld[ctx.label].join(", "); }
          return ctx.dataset.label + ": " + ctx.formattedValue;
        }}}}}});
    drawn += 1;
  });
  document.body.setAttribute("data-notifiable-charts", String(drawn));
}());
