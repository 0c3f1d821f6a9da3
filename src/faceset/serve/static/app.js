// faceset review app: tiny vanilla helpers (loaded as a file: the CSP forbids inline script).
(function () {
  "use strict";
  // Drag one person card onto another: merge the dragged person into the target.
  var form = document.getElementById("merge-form");
  if (form) {
    var dragged = null;
    form.querySelectorAll(".card.person[draggable]").forEach(function (card) {
      card.addEventListener("dragstart", function (e) {
        dragged = card.dataset.person; card.classList.add("dragging");
        e.dataTransfer.setData("text/plain", dragged);
      });
      card.addEventListener("dragend", function () { card.classList.remove("dragging"); });
      card.addEventListener("dragover", function (e) { if (dragged && dragged !== card.dataset.person) { e.preventDefault(); card.classList.add("drag-over"); } });
      card.addEventListener("dragleave", function () { card.classList.remove("drag-over"); });
      card.addEventListener("drop", function (e) {
        e.preventDefault(); card.classList.remove("drag-over");
        var target = card.dataset.person;
        if (!dragged || dragged === target) return;
        if (!window.confirm("Merge person " + dragged + " into person " + target + "?")) return;
        form.querySelectorAll("input[name=other], input[name=keep]").forEach(function (i) { i.checked = false; });
        var other = form.querySelector("input[name=other][value='" + dragged + "']");
        var keep = form.querySelector("input[name=keep][value='" + target + "']");
        if (other && keep) { other.checked = true; keep.checked = true; form.submit(); }
      });
    });
  }
  document.querySelectorAll("button.select-all").forEach(function (b) {
    b.addEventListener("click", function () {
      var f = document.getElementById(b.dataset.target);
      var boxes = f.querySelectorAll("input[type=checkbox][name=face]");
      var all = Array.prototype.every.call(boxes, function (x) { return x.checked; });
      boxes.forEach(function (x) { x.checked = !all; });
    });
  });
  var confirmBtn = document.getElementById("confirm-forget");
  if (confirmBtn) {
    confirmBtn.addEventListener("click", function (e) {
      var n = document.querySelectorAll("#forget-form input[name=face]:checked").length;
      if (!window.confirm("Erase " + n + " faces for good?")) e.preventDefault();
    });
  }
})();
