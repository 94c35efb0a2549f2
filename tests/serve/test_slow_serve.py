"""`wirt serve` with a real Debian guest (slow: one initramfs boot shared by the module):
buffered exec, exec over a websocket with stdin, the console websocket, the browser console."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import aiohttp
import pytest
from serverproc import Server, stop_all

pytestmark = pytest.mark.slow
BOOT = 300.0  # boot to the guest agent on a loaded 2-core machine
PROMPT = "wirt:/# "


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    """A server and a created initramfs VM "g" (started by the first test that needs it)."""
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("WIRT_HOME")
    os.environ["WIRT_HOME"] = str(home)
    s = Server(home)
    try:
        r = s.unix.post("/v1/vms", {"name": "g", "image": "initramfs", "memory": "128M", "net": "none",
                                    "disk": "none"})
        assert r.status == 201, r
        yield s
    finally:
        s.stop()
        stop_all(home)
        if old is None:
            os.environ.pop("WIRT_HOME", None)
        else:
            os.environ["WIRT_HOME"] = old


def running(s: Server) -> None:
    if s.unix.get("/v1/vms/g").json()["state"] != "running":
        assert s.unix.post("/v1/vms/g/start").json()["state"] == "running"


def _browser(tmp_path):
    """Debian's headless Chromium driven by Selenium (chromium and chromium-driver: make test installs them)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: install Debian's chromium and chromium-driver (make test does this)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def test_browser_console_starts_a_vm_and_runs_uname(guest, tmp_path):
    """The issue's browser test: open the console, start the VM, see the banner, type uname -m."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert guest.unix.get("/v1/vms/g").json()["state"] == "stopped"
    driver = _browser(tmp_path)
    screen = "return term ? Array.from({length: term.buffer.active.length}, (_, i) => " \
             "term.buffer.active.getLine(i).translateToString(true)).join('\\n') : ''"
    try:
        driver.get(f"{guest.base}/ui/?token={guest.token}")  # sets the token cookie, redirects to /ui/
        wait = WebDriverWait(driver, 60)
        row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-vm='g']"))
        row.find_element(By.CSS_SELECTOR, "button[data-action='start']").click()
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-vm='g'] td.state").text == "running")
        WebDriverWait(driver, BOOT, poll_frequency=1).until(lambda d: PROMPT in d.execute_script(screen))
        assert "starting a shell" in driver.execute_script(screen)  # the initramfs banner
        driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("echo $((6*7))-mark; uname -m\n")
        WebDriverWait(driver, 120, poll_frequency=0.5).until(
            lambda d: "riscv64" in d.execute_script(screen).split("42-mark")[-1])
        driver.save_screenshot(str(tmp_path / "console.png"))
    finally:
        driver.quit()


def test_buffered_exec(guest):
    running(guest)
    r = guest.tcp.post("/v1/vms/g/exec", {"command": "uname -m; echo err >&2; exit 3", "timeout": BOOT})
    assert r.status == 200, r
    out = r.json()
    assert out == {"status": 3, "stdout": "riscv64\n", "stderr": "err\n",
                   "stdout_base64": base64.b64encode(b"riscv64\n").decode(),
                   "stderr_base64": base64.b64encode(b"err\n").decode()}
    r = guest.unix.post("/v1/vms/g/exec", {"command": ["tr", "a-z", "A-Z"],
                                           "stdin": base64.b64encode(b"shout\n").decode()})
    assert r.json()["stdout"] == "SHOUT\n"


def test_exec_websocket_streams_stdin_and_output(guest):
    running(guest)

    async def go() -> list:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {guest.token}"}) as s:
            async with s.ws_connect(f"{guest.base}/v1/vms/g/exec/ws") as ws:
                await ws.send_str(json.dumps({"command": "tr a-z A-Z; echo done >&2", "stdin": True,
                                              "timeout": BOOT}))
                for chunk in (b"one ", b"two\n", b"three\n"):
                    await ws.send_bytes(chunk)
                await ws.send_str(json.dumps({"eof": True}))
                msgs = []
                async with asyncio.timeout(BOOT):
                    while True:
                        m = await ws.receive()
                        if m.type != aiohttp.WSMsgType.TEXT:
                            break
                        msgs.append(json.loads(m.data))
                return msgs

    msgs = asyncio.run(go())
    assert msgs[-1] == {"exit": 0}, msgs
    out = b"".join(base64.b64decode(m["data"]) for m in msgs if m.get("stream") == "stdout")
    err = b"".join(base64.b64decode(m["data"]) for m in msgs if m.get("stream") == "stderr")
    assert (out, err) == (b"ONE TWO\nTHREE\n", b"done\n")


def test_exec_websocket_streams_stdin_line_by_line(guest):
    """Each line sent reaches the guest program while it runs: its answer comes back before the
    next line exists. A client that hangs up ends the command in the guest."""
    running(guest)

    async def read_until(ws, want: bytes, out: bytearray) -> None:
        while want not in out:
            m = await ws.receive()
            assert m.type == aiohttp.WSMsgType.TEXT, m
            msg = json.loads(m.data)
            assert "exit" not in msg and "error" not in msg, (msg, bytes(out))
            if msg.get("stream") == "stdout":
                out += base64.b64decode(msg["data"])

    async def go() -> tuple[bytes, list]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {guest.token}"}) as s:
            async with s.ws_connect(f"{guest.base}/v1/vms/g/exec/ws") as ws:
                await ws.send_str(json.dumps({"command": "while read -r l; do echo \"got:$l\"; done; echo end; exit 4",
                                              "stdin": True, "timeout": BOOT}))
                out = bytearray()
                async with asyncio.timeout(BOOT):
                    for line in (b"one", b"two", b"three"):
                        await ws.send_bytes(line + b"\n")
                        await read_until(ws, b"got:" + line + b"\n", out)
                    await ws.send_str(json.dumps({"eof": True}))
                    rest = []
                    while not rest or "exit" not in rest[-1]:
                        rest.append(json.loads((await ws.receive()).data))
                out += b"".join(base64.b64decode(m["data"]) for m in rest if m.get("stream") == "stdout")
            # hanging up mid-command: the guest program is ended (its pid file is gone)
            async with s.ws_connect(f"{guest.base}/v1/vms/g/exec/ws") as ws:
                await ws.send_str(json.dumps({"command": "echo $$ > /tmp/reader; echo up; cat > /dev/null",
                                              "stdin": True, "timeout": BOOT}))
                await read_until(ws, b"up\n", bytearray())
            return bytes(out), rest

    out, rest = asyncio.run(go())
    assert out == b"got:one\ngot:two\ngot:three\nend\n"
    assert rest[-1] == {"exit": 4}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = guest.unix.post("/v1/vms/g/exec", {"command": "kill -0 $(cat /tmp/reader) 2>/dev/null && echo alive || echo gone"})
        if r.json()["stdout"] == "gone\n":
            break
        time.sleep(0.5)
    assert r.json()["stdout"] == "gone\n"


@pytest.fixture(scope="module")
def debian(guest):
    """A Debian root-disk VM "deb" on the module's server (the initramfs's busybox has no script(1),
    so guest terminals need the root disk), booted to its agent."""
    from wirt.images.rootdisk import root_disk

    root_disk()  # built once and cached (tests/vm/test_slow_exec.py uses the same image)
    r = guest.unix.post("/v1/vms", {"name": "deb", "image": "debian", "init": "minimal", "memory": "256M",
                                    "disk": "4G", "net": "none"})
    assert r.status == 201, r
    assert guest.unix.post("/v1/vms/deb/start").json()["state"] == "running"
    assert guest.unix.post("/v1/vms/deb/exec", {"command": "true", "timeout": BOOT}).json()["status"] == 0
    yield "deb"
    guest.unix.post("/v1/vms/deb/stop?force=true")


def test_exec_websocket_on_a_terminal(guest, debian):
    """"tty": the command runs on a guest pseudo-terminal of that size with TERM set, reads what
    is typed, and a resize frame changes the size (SIGWINCH) while it runs."""
    script = ("[ -t 0 ] && echo is-a-tty; stty size; echo term=$TERM; read l; echo got=$l; "
              "trap 'stty size; exit 5' WINCH; echo armed-$((5*5)); while sleep 0.2; do :; done")

    async def go() -> tuple[bytes, list]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {guest.token}"}) as s:
            async with s.ws_connect(f"{guest.base}/v1/vms/{debian}/exec/ws") as ws:
                await ws.send_str(json.dumps({"command": script, "tty": [100, 30], "timeout": BOOT}))
                out, msgs = bytearray(), []

                async def until(text: bytes) -> None:
                    while text not in out:
                        m = await ws.receive()
                        assert m.type == aiohttp.WSMsgType.TEXT, m
                        msgs.append(json.loads(m.data))
                        assert "exit" not in msgs[-1] and "error" not in msgs[-1], (msgs[-1], bytes(out))
                        out.extend(base64.b64decode(msgs[-1]["data"]))

                async with asyncio.timeout(BOOT):
                    await until(b"term=xterm-256color")
                    await ws.send_bytes(b"typed-line\r")
                    await until(b"armed-25")
                    await ws.send_str(json.dumps({"resize": [120, 40]}))
                    while "exit" not in msgs[-1]:
                        msgs.append(json.loads((await ws.receive()).data))
                        out.extend(base64.b64decode(msgs[-1].get("data", "")))
                return bytes(out), msgs

    out, msgs = asyncio.run(go())
    assert {m["stream"] for m in msgs if "stream" in m} == {"stdout"}  # one stream, as on any terminal
    assert msgs[-1] == {"exit": 5}
    text = out.decode(errors="replace")
    assert "is-a-tty" in text and "30 100" in text and "got=typed-line" in text, text
    assert "40 120" in text.split("armed-25")[-1], text


def _remote_cli(guest, tmp_path, monkeypatch):
    """`wirt` as a subprocess with --remote set to the server (and a client home of its own)."""
    import subprocess
    import sys

    monkeypatch.setenv("WIRT_REMOTE", f"unix:{guest.socket}")
    monkeypatch.setenv("WIRT_HOME", str(tmp_path / "client-home"))
    main = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"

    def wirt(*args: str, data: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", main, *args], input=data, capture_output=True, timeout=BOOT)

    return wirt


def test_remote_cli_streams_exec_stdin(guest, tmp_path, monkeypatch):
    """`wirt --remote URL exec -i` streams stdin through the exec websocket: more than a buffered
    request may carry, stdout and stderr apart; `-t` reaches the guest (whose busybox has no script(1))."""
    running(guest)
    guest.unix.post("/v1/vms/g/exec", {"command": "true", "timeout": BOOT})
    wirt = _remote_cli(guest, tmp_path, monkeypatch)
    from wirt.vm.agent import MAX_STDIN

    big = b"0123456789abcde\n" * (MAX_STDIN // 16 * 3)
    r = wirt("exec", "-i", "g", "--", "sh", "-c", "wc -c; echo err >&2; exit 7", data=big)
    assert (r.returncode, r.stdout.split(), r.stderr) == (7, [str(len(big)).encode()], b"err\n"), r
    r = wirt("exec", "-t", "g", "--", "true")
    assert r.returncode == 127 and b"no script(1)" in r.stderr and r.stderr.count(b"\n") == 1, r.stderr


def test_remote_shell_on_a_guest_terminal(guest, debian, tmp_path, monkeypatch):
    """`wirt --remote URL shell` under a pty: the guest terminal has this one's size, follows its
    resizes, takes Ctrl-C, and ends with the shell's status (tests/vm/guestshell.py, as locally)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("guestshell", Path(__file__).parent.parent / "vm" / "guestshell.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    wirt = _remote_cli(guest, tmp_path, monkeypatch)
    mod.shell_session(wirt, debian)
    assert not (tmp_path / "client-home" / "vms").exists()  # it all happened on the server


def test_console_websocket_runs_a_typed_command(guest):
    running(guest)
    guest.unix.post("/v1/vms/g/exec", {"command": "true", "timeout": BOOT})  # booted to userland

    async def go() -> str:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"{guest.base}/v1/vms/g/console",
                                    headers={"Authorization": f"Bearer {guest.token}"}) as ws:
                await ws.send_bytes(b"\n")
                seen = ""
                async with asyncio.timeout(BOOT):
                    while PROMPT not in seen:
                        seen += (await ws.receive()).data.decode(errors="replace")
                    await ws.send_bytes(b"echo $((6*7))-mark; uname -m\n")
                    while "42-mark" not in seen or "riscv64" not in seen.split("42-mark")[-1]:
                        seen += (await ws.receive()).data.decode(errors="replace")
                return seen

    seen = asyncio.run(go())
    assert "riscv64" in seen.split("42-mark")[-1]


def test_console_resize_reaches_the_guest_tty(guest):
    """The UART has no size channel: a resize on the console websocket is set on the guest's
    ttyS0 by its agent, and the shell on the console sees it (stty size, and SIGWINCH)."""
    running(guest)
    guest.unix.post("/v1/vms/g/exec", {"command": "true", "timeout": BOOT})

    async def go() -> tuple[dict, str]:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"{guest.base}/v1/vms/g/console",
                                    headers={"Authorization": f"Bearer {guest.token}"}) as ws:
                await ws.send_str(json.dumps({"resize": [101, 33]}))
                seen, reply = "", None
                async with asyncio.timeout(BOOT):
                    while reply is None:  # console bytes (the replayed backlog) may come first
                        m = await ws.receive()
                        if m.type == aiohttp.WSMsgType.TEXT:
                            reply = json.loads(m.data)
                    await ws.send_bytes(b"stty size\n")
                    while "33 101" not in seen.split("stty size")[-1]:
                        seen += (await ws.receive()).data.decode(errors="replace")
                    # a program in the foreground of the console gets SIGWINCH on the next resize
                    await ws.send_bytes(b"sh -c 'trap \"echo winch-$((6*7)); exit 0\" WINCH; "
                                        b"echo armed-$((5*5)); while sleep 0.2; do :; done'\n")
                    while "armed-25" not in seen:
                        seen += (await ws.receive()).data.decode(errors="replace")
                    await ws.send_str(json.dumps({"resize": [90, 20]}))
                    while "winch-42" not in seen:
                        m = await ws.receive()
                        if m.type == aiohttp.WSMsgType.TEXT:
                            assert json.loads(m.data) == {"resized": [90, 20]}
                        else:
                            seen += m.data.decode(errors="replace")
                return reply, seen

    reply, seen = asyncio.run(go())
    assert reply == {"resized": [101, 33]}
    assert "winch-42" in seen


def test_guest_panic_is_an_event(guest):
    """Last in the module: the guest panics (sysrq c) and the event log says so."""
    from wirt.vm.api import VM

    running(guest)
    guest.unix.post("/v1/vms/g/exec", {"command": "true", "timeout": BOOT})
    VM.get("g", guest.home).console_input("echo c > /proc/sysrq-trigger\n")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        panics = [e for e in guest.unix.get("/v1/vms/g/events").json() if e["type"] == "panic"]
        if panics:
            break
        time.sleep(0.5)
    assert panics and "Kernel panic - not syncing" in panics[0]["line"]
    assert guest.unix.post("/v1/vms/g/stop?force=true").status == 200
