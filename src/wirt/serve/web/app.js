// wirt web console: the VM list (live over /v1/events), actions through the REST API, and an
// xterm.js terminal on the console websocket. Plain browser JavaScript: no framework, no build.
"use strict";

const $ = (sel) => document.querySelector(sel);
let selected = null;   // the VM shown below the list
let term = null, fit = null, sock = null;

function size(n) {
  if (!n) return "-";
  for (const [s, k] of [["G", 30], ["M", 20], ["K", 10]]) if (n >= 2 ** k) return (n / 2 ** k).toFixed(n % 2 ** k ? 1 : 0) + s;
  return String(n);
}
function uptime(s) {
  if (s === null || s === undefined) return "-";
  s = Math.floor(s);
  return s < 60 ? s + "s" : s < 3600 ? Math.floor(s / 60) + "m" : Math.floor(s / 3600) + "h";
}
function say(text) { $("#message").textContent = text || ""; }

async function api(method, path, body) {
  const opt = { method, headers: {} };
  if (body !== undefined) { opt.body = JSON.stringify(body); opt.headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, opt);
  const type = r.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

async function act(name, what, extra) {
  say(what + " " + name + " ...");
  try {
    if (what === "delete") await api("DELETE", `/v1/vms/${name}?force=true`);
    else if (what === "snapshot") {
      const snap = prompt("snapshot name", "s" + Date.now() % 100000);
      if (!snap) return say("");
      await api("POST", `/v1/vms/${name}/snapshots`, { name: snap });
    } else if (what === "fork") {
      const snaps = await api("GET", `/v1/vms/${name}/snapshots`);
      const snap = prompt("fork from snapshot", snaps.length ? snaps[snaps.length - 1].name : "");
      const twin = snap && prompt("new VM name", name + "-fork");
      if (!twin) return say("");
      await api("POST", `/v1/vms/${name}/fork`, { snapshot: snap, name: twin, start: true });
    } else await api("POST", `/v1/vms/${name}/${what}${extra || ""}`);
    say("");
    if (what === "start" && selected === name) attach(name);
  } catch (e) { say(e.message); }
  refresh();
}

function button(label, fn) {
  const b = document.createElement("button");
  b.textContent = label; b.dataset.action = label;
  b.addEventListener("click", (ev) => { ev.stopPropagation(); fn(); });
  return b;
}

async function refresh() {
  let rows;
  try { rows = await api("GET", "/v1/vms"); } catch (e) { return say(e.message); }
  const body = $("#vms");
  body.replaceChildren();
  for (const vm of rows) {
    const tr = document.createElement("tr");
    tr.dataset.vm = vm.name;
    if (vm.name === selected) tr.className = "selected";
    for (const [text, cls] of [[vm.name], [vm.state, "state state-" + vm.state], [vm.cpus ?? "-"], [size(vm.memory)],
                               [vm.disk_size ? size(vm.disk_used) + "/" + size(vm.disk_size) : "-"], [uptime(vm.uptime)]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    const up = ["running", "paused", "starting"].includes(vm.state);
    if (!up) td.appendChild(button("start", () => { select(vm.name); act(vm.name, "start"); }));
    if (up) td.appendChild(button("stop", () => act(vm.name, "stop", "?force=true")));
    if (vm.state === "running") td.appendChild(button("pause", () => act(vm.name, "pause")));
    if (vm.state === "paused") td.appendChild(button("resume", () => act(vm.name, "resume")));
    td.appendChild(button("snapshot", () => act(vm.name, "snapshot")));
    td.appendChild(button("fork", () => act(vm.name, "fork")));
    td.appendChild(button("delete", () => { if (confirm(`delete ${vm.name} and its disks?`)) act(vm.name, "delete"); }));
    tr.appendChild(td);
    tr.addEventListener("click", () => select(vm.name));
    body.appendChild(tr);
  }
  if (selected && !rows.some((vm) => vm.name === selected)) { selected = null; $("#detail").hidden = true; }
}

function select(name) {
  if (selected === name) return;
  selected = name;
  $("#detail").hidden = false;
  $("#detail-name").textContent = name;
  for (const tr of document.querySelectorAll("#vms tr")) tr.className = tr.dataset.vm === name ? "selected" : "";
  attach(name);
  show("terminal");
}

function attach(name) {
  if (sock) { sock.onclose = null; sock.close(); sock = null; }
  if (!term) {
    term = new Terminal({ convertEol: false, scrollback: 5000, fontSize: 14 });
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($("#terminal"));
    term.onData((d) => { if (sock && sock.readyState === 1) sock.send(new TextEncoder().encode(d)); });
    term.onResize(({ cols, rows }) => { if (sock && sock.readyState === 1) sock.send(JSON.stringify({ resize: [cols, rows] })); });
    window.addEventListener("resize", () => fit.fit());
  }
  term.reset();
  fit.fit();
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + `/v1/vms/${name}/console`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (m) => { if (typeof m.data !== "string") term.write(new Uint8Array(m.data)); };
  ws.onclose = () => { if (sock === ws) { term.write("\r\n[console closed]\r\n"); sock = null; } };
  ws.onopen = () => { term.focus(); ws.send(JSON.stringify({ resize: [term.cols, term.rows] })); };
  sock = ws;
}

async function show(tab) {
  for (const el of document.querySelectorAll(".tab")) el.hidden = el.id !== tab;
  if (tab === "logs") $("#logs").textContent = await api("GET", `/v1/vms/${selected}/logs?tail=65536`).catch((e) => e.message);
  if (tab === "events") {
    const evs = await api("GET", `/v1/vms/${selected}/events`).catch(() => []);
    $("#events").textContent = evs.map((e) => `${new Date(e.time * 1000).toISOString()}  #${e.id} ${e.type} ${e.reason || e.snapshot || ""}`).join("\n");
  }
  if (tab === "terminal" && fit) fit.fit();
}

for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.tab));

$("#create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = Object.fromEntries(f.entries());
  try { await api("POST", "/v1/vms", body); say(""); ev.target.reset(); } catch (e) { say(e.message); }
  refresh();
});

// Live state: every event refreshes the list (EventSource resumes by Last-Event-ID by itself).
const events = new EventSource("/v1/events?after=" + (window.WIRT_LAST_EVENT || 0));
events.onmessage = refresh;
for (const t of ["created", "removed", "started", "stopped", "crashed", "paused", "resumed", "forked",
                 "admission-refused", "snapshot-created", "snapshot-restored", "snapshot-removed", "panic"])
  events.addEventListener(t, refresh);
setInterval(refresh, 5000);   // uptimes and resources
refresh();
