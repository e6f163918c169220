// gavat dashboard: live figures over Server-Sent Events. Every page is complete without it;
// this only refreshes, in place, the elements that name a field of the stream's JSON.
//   data-field="a.b"  -> textContent = the value at a.b
//   data-html="a.b"   -> innerHTML = the value at a.b (markup rendered and escaped by gavat)
//   data-state="a.b"  -> className "state <value's first word>"
(function () {
  "use strict";
  var source = document.body.getAttribute("data-live");
  if (!source || !window.EventSource) return;
  function at(data, path) {
    return path.split(".").reduce(function (o, k) { return o === null || o === undefined ? o : o[k]; }, data);
  }
  function status(text) {
    var el = document.getElementById("live-status");
    if (el) el.textContent = text;
  }
  var stream = new EventSource(source);
  stream.addEventListener("overview", function (event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var v = at(data, el.getAttribute("data-field"));
      if (v !== undefined && v !== null) el.textContent = String(v);
    });
    document.querySelectorAll("[data-html]").forEach(function (el) {
      var v = at(data, el.getAttribute("data-html"));
      if (typeof v === "string") el.innerHTML = v;
    });
    document.querySelectorAll("[data-state]").forEach(function (el) {
      var v = at(data, el.getAttribute("data-state"));
      if (typeof v === "string") el.className = "state " + v.split(/[\s:]/)[0];
    });
    status("live · updated " + new Date().toLocaleTimeString());
  });
  stream.onerror = function () { status("connection lost · retrying"); };
})();
