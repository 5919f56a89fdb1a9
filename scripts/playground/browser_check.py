"""Drives headless Chromium over the DevTools protocol (--remote-debugging-pipe: JSON messages
ending in NUL on file descriptors 3 and 4; Python's standard library only) through the
playground page, the way a person would: it types into the page's own text box, clicks its
radio buttons and its Ask button, then reads the rendered DOM. Run by scripts/playground/browser-test,
which starts the miners and the playground and names them here:

  uid-0 SmolLM2 and uid-1 Gemma 3 (real axons), uid-2 a misbehaving miner, uid-3 a closed port,
  and the mixture (a real `axon mixture` of uid-0 and uid-1).

Exits non-zero, naming every failed check, when the page does not show what it must.
"""
import argparse
import base64
import fcntl
import json
import os
import subprocess
import sys
import time

REAL = ["uid-0", "uid-1", "mixture"]
BAD, CLOSED = "uid-2", "uid-3"


class Browser:
    def __init__(self, profile):
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--no-default-browser-check", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                 f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]

        def child_fds():
            # Chromium reads commands from fd 3 and writes answers to fd 4 (moved high first, so
            # neither dup2 overwrites the other end).
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(["chromium"] + flags, pass_fds=(3, 4, to_browser_r, from_browser_w), preexec_fn=child_fds,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.writer = os.fdopen(to_browser_w, "wb", buffering=0)
        self.reader = os.fdopen(from_browser_r, "rb", buffering=0)
        self.buffer = b""
        self.next_id = 0
        self.session = None
        self.exceptions = []

    def _read_message(self):
        while b"\0" not in self.buffer:
            chunk = self.reader.read(1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=True):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        self.writer.write(json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(reply["params"]["exceptionDetails"].get("text", "exception"))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1240, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}: {expression[:80]}")
        return result["result"].get("value")

    def wait_for(self, expression, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(0.1)
        return False

    def click(self, selector):
        """A real mouse click at the element's centre."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                            f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def type_into(self, selector, text):
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.value = ''; }})()")
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path):
        height = self.evaluate("Math.min(2400, document.documentElement.scrollHeight)")
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1240, "height": height, "deviceScaleFactor": 1, "mobile": False})
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1240, "height": 900, "deviceScaleFactor": 1, "mobile": False})

    def close(self):
        try:
            self.call("Browser.close", session=False)
        except RuntimeError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


# What the page shows per card, read from the DOM (textContent only).
CARDS = """(() => Array.from(document.querySelectorAll('#results .card')).map(card => ({
  miner: card.dataset.miner, classes: card.className, code: card.dataset.code || null,
  codeText: (card.querySelector('.code') || {}).textContent || '',
  latency: (card.querySelector('.latency') || {}).textContent || '',
  message: card.querySelector('.message').textContent,
  bars: Array.from(card.querySelectorAll('.bar-row')).map(row => ({
    probability: Number(row.dataset.probability), phrase: row.querySelector('.phrase').textContent,
    width: row.querySelector('.fill').style.width })),
  continuation: (card.querySelector('.continuation') || {}).textContent ?? null,
  cosine: (card.querySelector('.cosine') || {}).textContent ?? null,
})))()"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--payload", required=True, help="the misbehaving miner's generated text")
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", required=True)
    args = parser.parse_args()
    failures = []

    def check(condition, what):
        if not condition:
            failures.append(what)
        return condition

    browser = Browser(args.profile)
    try:
        browser.open(args.url)
        if not browser.wait_for("document.body && document.body.dataset.state === 'ready'", 30):
            sys.exit("browser_check: the page never listed the miners")
        listed = browser.evaluate("Array.from(document.querySelectorAll('#miner-table tbody tr')).map(r => r.dataset.miner)")
        check(sorted(listed) == sorted(REAL + [BAD, CLOSED]), f"the miner picker lists {listed}")

        def ask(mode, seconds, fields):
            browser.click(f'input[name="mode"][value="{mode}"]')
            for selector, text in fields:
                browser.type_into(selector, text)
            browser.click("#submit")
            if not browser.wait_for("document.body.dataset.state === 'asking'", 5):
                failures.append(f"{mode}: the Ask button did not start asking")
            if not browser.wait_for("document.body.dataset.state === 'done'", seconds):
                failures.append(f"{mode}: not every miner's answer arrived within {seconds} s")
            cards = {card["miner"]: card for card in browser.evaluate(CARDS)}
            check(sorted(cards) == sorted(REAL + [BAD, CLOSED]), f"{mode}: cards for {sorted(cards)}")
            for miner, card in cards.items():
                check(card["code"] is not None and card["codeText"].strip() != "", f"{mode}: {miner} shows no return code")
                check(not card["code"] or card["code"] == "1" or card["message"].strip(), f"{mode}: {miner} failed with no message")
            return cards

        cards = ask("next", 30, [("#text", "The capital of France is")])
        for miner in REAL:
            card = cards.get(miner, {})
            bars = card.get("bars", [])
            check(card.get("code") == "1" and "ok" in card.get("classes", ""), f"next: {miner} answered {card.get('codeText')}: {card.get('message')}")
            check(len(bars) == 10, f"next: {miner} shows {len(bars)} bars, expected its top 10 phrases")
            total = sum(bar["probability"] for bar in bars)
            # The probabilities are float32 values of one distribution: at most 1, up to rounding (10 values, 2^-20 each).
            check(total <= 1 + 10 * 2 ** -20, f"next: {miner}'s probabilities sum to {total}")
            check(all(0 <= bar["probability"] <= 1 and bar["width"].endswith("%") for bar in bars), f"next: {miner} has a bad bar: {bars}")
            check(card.get("latency", "").endswith("ms"), f"next: {miner} shows no latency")
        check(any('" Paris"' == bar["phrase"] for bar in cards.get("uid-0", {}).get("bars", [])),
              "next: SmolLM2 does not list \" Paris\" among its top 10")
        for miner, says in ((BAD, "malformed"), (CLOSED, "unreachable")):
            card = cards.get(miner, {})
            check("error" in card.get("classes", "") and says in card.get("message", ""),
                  f"next: {miner} should be an error row saying '{says}': {card}")
        browser.screenshot(os.path.join(args.out, "next.png"))

        cards = ask("generate", 60, [("#text", "Once upon a time"), ("#max_tokens", "36")])
        bad = cards.get(BAD, {})
        check(bad.get("code") == "1" and bad.get("continuation") == args.payload,
              f"generate: the misbehaving miner's text should show as the escaped string {args.payload!r}, got {bad.get('continuation')!r}")
        for miner in ("uid-0", "uid-1"):
            card = cards.get(miner, {})
            check(card.get("code") == "1" and (card.get("continuation") or "").strip(),
                  f"generate: {miner} shows no continuation: {card.get('codeText')} {card.get('message')}")
        injected = browser.evaluate("[document.querySelectorAll('#results script, #results img').length, typeof window.pwned]")
        check(injected == [0, "undefined"], f"generate: the miner's markup became elements or ran: {injected}")
        browser.screenshot(os.path.join(args.out, "generate.png"))

        cards = ask("embed", 30, [("#text", "The capital of France is Paris."), ("#text2", "Paris is the capital city of France.")])
        for miner in ("uid-0", "uid-1"):
            text = cards.get(miner, {}).get("cosine") or ""
            try:
                cosine = float(text)
            except ValueError:
                cosine = None
            check(cosine is not None and -1 <= cosine <= 1, f"embed: {miner} shows cosine {text!r}")
        check("error" in cards.get(BAD, {}).get("classes", ""), "embed: the misbehaving miner's absurd shape is not an error row")
        browser.screenshot(os.path.join(args.out, "embed.png"))

        alive = browser.evaluate("fetch('/api/miners').then(r => r.ok)")
        check(alive, "the playground stopped answering after the misbehaving miner")
        check(not browser.exceptions, f"the page threw: {browser.exceptions}")
    finally:
        browser.close()
    if failures:
        for failure in failures:
            print(f"browser_check: FAIL {failure}", file=sys.stderr)
        sys.exit(1)
    print("browser_check: the page showed every miner's answer, codes and errors; miner markup stayed text")


if __name__ == "__main__":
    main()
