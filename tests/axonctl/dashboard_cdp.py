#!/usr/bin/env python3
"""Drives a real headless Chromium over the DevTools protocol (stdlib only: a minimal
WebSocket client) for the dashboard test: opens the page, waits until it has polled
GET /v1/top at least twice, saves the DOM, waits --gap seconds of real time (virtual time
would make the page's sampling intervals milliseconds long), saves the DOM again and a
screenshot. Chromium is this script's own child and is stopped by its PID at the end.

usage: dashboard_cdp.py URL OUT_DIR SCREENSHOT [--gap SECONDS]
writes OUT_DIR/dom1.html and OUT_DIR/dom2.html; exit 0, or 1 with the reason on stderr."""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


class WebSocket:
    def __init__(self, url):
        assert url.startswith("ws://"), url
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError("DevTools refused the WebSocket: " + head.decode(errors="replace"))
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        elif len(data) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def receive(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            length = b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)  # the server never masks
            message += payload
            if b0 & 0x80:
                return message.decode()

    def call(self, method, **params):
        self.next_id += 1
        self.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.receive())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, out_dir, screenshot = sys.argv[1:4]
    gap = float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--gap" else 2.5
    profile = tempfile.mkdtemp(prefix="axtop-chromium-")
    chromium = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
         "--no-first-run", "--window-size=1280,1000", "--remote-debugging-port=0",
         "--user-data-dir=" + profile, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.monotonic() > deadline or chromium.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port within 30 s")
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(p for p in pages if p.get("type") == "page")
        ws = WebSocket(page["webSocketDebuggerUrl"])
        ws.call("Page.navigate", url=url)

        def dom():
            return ws.call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                           returnByValue=True)["result"]["value"]

        def samples():
            return ws.call("Runtime.evaluate", returnByValue=True,
                           expression="Number((document.getElementById('samples')||{dataset:{}}).dataset.value||0)"
                           )["result"]["value"]

        def wait_samples(n, seconds):
            deadline = time.monotonic() + seconds
            while samples() < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the page did not reach {n} samples in {seconds} s:\n" + dom())
                time.sleep(0.25)

        wait_samples(2, 20)
        first = dom()
        seen = samples()
        time.sleep(gap)
        wait_samples(seen + 1, 10)
        second = dom()
        png = ws.call("Page.captureScreenshot", format="png")["data"]
        with open(os.path.join(out_dir, "dom1.html"), "w") as f:
            f.write(first)
        with open(os.path.join(out_dir, "dom2.html"), "w") as f:
            f.write(second)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(png))
        return 0
    except Exception as e:  # one line for the test's failure message
        print(f"dashboard_cdp: {e}", file=sys.stderr)
        return 1
    finally:
        chromium.terminate()
        try:
            chromium.wait(10)
        except subprocess.TimeoutExpired:
            chromium.kill()
            chromium.wait()
        subprocess.run(["rm", "-rf", profile])


if __name__ == "__main__":
    sys.exit(main())
