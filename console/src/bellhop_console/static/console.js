/* Bellhop console: small progressive enhancement, no build step.
 * - forms marked data-enhance post with fetch and show the answer in #result;
 * - pages with data-live follow the hotel's events (SSE) and update the DOM in place.
 * Text is always set with textContent: nothing from the server is parsed as HTML. */
(function () {
  "use strict";
  var body = document.body;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var BATTERY_LOW = 20;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clock(iso) {
    var d = iso ? new Date(iso) : new Date();
    return d.toISOString().slice(11, 19) + " UTC";
  }

  /* -- forms --------------------------------------------------------------------------- */
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.matches || !form.matches("form[data-enhance]")) return;
    ev.preventDefault();
    var out = document.getElementById("result");
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    if (out) { out.textContent = "Sending…"; out.dataset.ok = ""; }
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch", "X-CSRF-Token": csrf }
    }).then(function (r) {
      return r.json().then(function (j) { return { status: r.status, body: j }; });
    }).then(function (r) {
      if (r.status === 401) { window.location.assign("/login"); return; }
      var text = r.body.message || "";
      if (!r.body.ok && r.body.code) text += " (" + r.body.code + ")";
      if (r.body.detail) text += " " + r.body.detail;
      if (out) { out.textContent = text; out.dataset.ok = r.body.ok ? "yes" : "no"; }
      if (r.body.ok && form.classList.contains("ack")) form.remove();
    }).catch(function () {
      if (out) { out.textContent = "The console did not answer: try again."; out.dataset.ok = "no"; }
    }).then(function () { if (button) button.disabled = false; });
  });

  /* -- live ------------------------------------------------------------------------------ */
  var url = body.getAttribute("data-live");
  if (!url || !window.EventSource) return;
  var page = body.getAttribute("data-page");
  var dataNode = document.getElementById("live-data");
  var live = dataNode ? JSON.parse(dataNode.textContent) : { rooms: {}, alerts: {} };
  var deviceRoom = {};
  Object.keys(live.rooms).forEach(function (room) {
    Object.keys(live.rooms[room]).forEach(function (d) { deviceRoom[d] = room; });
  });
  var tiles = {};
  document.querySelectorAll("li.tile[data-room]").forEach(function (t) {
    tiles[t.getAttribute("data-room")] = t;
  });
  var liveState = document.getElementById("live-state");
  var servedPath = document.getElementById("served-path");
  var servedAsOf = document.getElementById("served-asof");

  function served(msg) {
    if (!msg.path || !servedPath) return;
    servedPath.textContent = msg.path === "lan" ? "LAN" : "cloud";
    servedPath.className = "path path-" + msg.path;
    document.getElementById("served").setAttribute("data-path", msg.path);
    if (servedAsOf) { servedAsOf.textContent = clock(msg.at) + " (live)"; }
  }

  function num(v) { return typeof v === "number" ? v : null; }

  function tileFacts(room) {
    var devs = live.rooms[room] || {};
    var f = { occupied: null, lights: false, door: null, temp: null, setpoint: null, offline: 0, battery: 0 };
    Object.keys(devs).forEach(function (id) {
      var d = devs[id], r = d.reported || {};
      if (!d.online) f.offline += 1;
      if (typeof r.occupied === "boolean") f.occupied = r.occupied || !!f.occupied;
      if (d.kind === "light" && r.on === true) f.lights = true;
      if (typeof r.open === "boolean") f.door = r.open;
      if (num(r.temperature) !== null) f.temp = r.temperature;
      if (d.kind === "thermostat" && num(r.setpoint) !== null) f.setpoint = r.setpoint;
      if (r.battery_low === true || (num(r.battery) !== null && r.battery < BATTERY_LOW)) f.battery += 1;
    });
    if (f.occupied === null) f.occupied = f.lights;
    f.alarms = 0;
    Object.keys(live.alerts).forEach(function (a) { if (live.alerts[a] === room) f.alarms += 1; });
    f.state = f.alarms ? "alarm" : f.offline ? "offline" : f.occupied ? "occupied" : "vacant";
    return f;
  }

  function redrawTile(room) {
    var t = tiles[room];
    if (!t) return;
    var f = tileFacts(room);
    t.className = "tile " + f.state;
    t.setAttribute("data-alarms", String(f.alarms));
    var set = function (name, text) { var s = t.querySelector('[data-f="' + name + '"]'); if (s) s.textContent = text; };
    set("state", f.state);
    var temp = "";
    if (f.temp !== null) temp = f.temp.toFixed(1) + "°";
    if (f.setpoint !== null) temp += " → " + f.setpoint.toFixed(1) + "°";
    set("temp", temp);
    set("door", f.door === true ? "door open" : f.door === false ? "door shut" : "");
    set("alarms", f.alarms ? f.alarms + " alarm(s)" : "");
    set("offline", f.offline ? f.offline + " offline" : "");
    set("battery", f.battery ? "battery low" : "");
  }

  function setValues(section, field, values) {
    var list = section.querySelector('[data-f="' + field + '"]');
    if (!list) return;
    Object.keys(values).forEach(function (k) {
      var v = list.querySelector('[data-key="' + CSS.escape(k) + '"]');
      if (!v) {
        if (list.children.length === 1 && !list.querySelector("[data-key]")) list.textContent = "";
        var li = el("li");
        li.appendChild(el("span", "k", k));
        li.appendChild(document.createTextNode(" "));
        v = el("span", "v");
        v.setAttribute("data-key", k);
        li.appendChild(v);
        list.appendChild(li);
      }
      v.textContent = JSON.stringify(values[k]);
      v.classList.remove("changed"); void v.offsetWidth; v.classList.add("changed");
    });
  }

  function device(id) {
    return document.querySelector('section.device[data-device="' + CSS.escape(id) + '"]');
  }

  function onState(msg) {
    var d = msg.data, room = msg.room_id || deviceRoom[d.device_id];
    if (room && live.rooms[room] && live.rooms[room][d.device_id]) {
      var rep = live.rooms[room][d.device_id].reported;
      Object.keys(d.values).forEach(function (k) { rep[k] = d.values[k]; });
      redrawTile(room);
    }
    var section = device(d.device_id);
    if (section) setValues(section, "reported", d.values);
  }

  function onDevice(msg) {
    var d = msg.data, room = msg.room_id || deviceRoom[d.device_id];
    if (room && live.rooms[room] && live.rooms[room][d.device_id]) {
      live.rooms[room][d.device_id].online = !!d.online;
      redrawTile(room);
    }
    var section = device(d.device_id);
    if (section) {
      var badge = section.querySelector('[data-f="online"]');
      badge.textContent = d.online ? "online" : "offline";
      badge.className = "badge " + (d.online ? "ok" : "bad");
    }
  }

  function onDesired(msg) {
    var section = device(msg.data.device_id);
    if (section) setValues(section, "desired", msg.data.values || {});
  }

  function ackText(a) {
    if (!a.acknowledged_at) return "";
    return " · acknowledged " + clock(a.acknowledged_at) + " by " + (a.acknowledged_by || "?") +
      (a.note ? ": “" + a.note + "”" : "");
  }

  function alertItem(a) {
    var hotel = body.getAttribute("data-hotel");
    var li = el("li", "alert sev-" + a.severity);
    li.setAttribute("data-alert", a.alert_id);
    li.setAttribute("data-state", a.state);
    var what = el("p", "what");
    what.appendChild(el("strong", "", a.kind));
    what.appendChild(document.createTextNode(" · " + a.severity + " · "));
    var st = el("span", "", a.state); st.setAttribute("data-f", "state"); what.appendChild(st);
    if (a.room_id) {
      what.appendChild(document.createTextNode(" · room "));
      var link = el("a", "", a.room_id);
      link.href = "/hotels/" + encodeURIComponent(hotel) + "/rooms/" + encodeURIComponent(a.room_id);
      what.appendChild(link);
    }
    if (a.device_id) what.appendChild(document.createTextNode(" · " + a.device_id));
    li.appendChild(what);
    li.appendChild(el("p", "msg", a.message));
    var when = el("p", "when", "raised " + clock(a.raised_at));
    var ack = el("span", ""); ack.setAttribute("data-f", "ack"); when.appendChild(ack);
    li.appendChild(when);
    if (body.getAttribute("data-may-ack") === "yes" && a.state === "raised") {
      var form = el("form", "ack");
      form.method = "post";
      form.action = "/hotels/" + encodeURIComponent(hotel) + "/alerts/" + encodeURIComponent(a.alert_id) + "/ack";
      form.setAttribute("data-enhance", "");
      var token = el("input"); token.type = "hidden"; token.name = "csrf_token"; token.value = csrf;
      var label = el("label", "", "Note"); label.htmlFor = "note-" + a.alert_id;
      var note = el("input"); note.id = "note-" + a.alert_id; note.name = "note"; note.maxLength = 500;
      form.appendChild(token); form.appendChild(label); form.appendChild(note);
      form.appendChild(el("button", "", "Acknowledge"));
      li.appendChild(form);
    }
    return li;
  }

  function onAlert(msg) {
    var a = msg.data;
    if (a.state === "cleared") delete live.alerts[a.alert_id];
    else live.alerts[a.alert_id] = a.room_id;
    if (a.room_id) redrawTile(a.room_id);
    if (page !== "alerts") return;
    var list = document.getElementById("alert-list");
    var li = list.querySelector('[data-alert="' + CSS.escape(a.alert_id) + '"]');
    if (a.state === "cleared") { if (li) li.remove(); }
    else if (!li) { list.insertBefore(alertItem(a), list.firstChild); }
    else {
      li.setAttribute("data-state", a.state);
      li.querySelector('[data-f="state"]').textContent = a.state;
      li.querySelector('[data-f="ack"]').textContent = ackText(a);
      if (a.state !== "raised") { var f = li.querySelector("form.ack"); if (f) f.remove(); }
    }
    document.getElementById("no-alerts").hidden = list.children.length > 0;
  }

  var handlers = { state: onState, device: onDevice, desired: onDesired, alert: onAlert };
  var source = new EventSource(url);
  source.addEventListener("update", function (e) {
    var msg = JSON.parse(e.data);
    if (msg.type === "live") {
      liveState.textContent = msg.state === "live" ? "· live" :
        "· live updates interrupted: " + msg.detail + " (" + msg.code + "); retrying";
      return;
    }
    if (msg.type === "gap") {
      liveState.textContent = "· some updates were missed: reading again";
      window.location.reload();
      return;
    }
    served(msg);
    var handler = handlers[msg.type];
    if (handler) handler(msg);
    body.setAttribute("data-last-event", msg.type + ":" + Date.now());
  });
  source.onerror = function () { if (liveState) liveState.textContent = "· reconnecting…"; };
})();
