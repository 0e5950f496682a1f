"""TCP (and TLS) server speaking the RouterOS API to clients such as librouteros."""
from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from typing import Any

from .model import Device, Trap
from .protocol import SentenceReader, encode_sentence

LOG = logging.getLogger("routeros_sim")


# --------------------------------------------------------------------------------------------
# Queries (?name=value, ?-name, ?#|&!.)
# --------------------------------------------------------------------------------------------

def _query_compare(device: Device, path: tuple[str, ...], row: dict[str, str], word: str) -> bool:
    body = word[1:]
    op = "="
    if body[:1] in ("<", ">"):
        op, body = body[0], body[1:]
    elif body[:1] == "=":
        body = body[1:]
    if op == "=" and "=" not in body:
        if body.startswith("-"):
            return body[1:] not in row
        return body in row
    name, _, value = body.partition("=")
    if name not in row:
        return False
    current = row[name]
    wanted = value
    if path in device.menus and name in device.menus[path].fields:
        try:
            wanted = device.format_value(path, name, device.parse_value(path, name, value))
        except Trap:
            wanted = value
        except Exception:  # noqa: BLE001 - a query never fails, it just does not match
            wanted = value
    if op == "=":
        return current == wanted
    try:
        left, right = float(current), float(wanted)
    except ValueError:
        left, right = current, wanted  # type: ignore[assignment]
    return left < right if op == "<" else left > right


def run_query(device: Device, path: tuple[str, ...], row: dict[str, str], words: list[str]) -> bool:
    stack: list[bool] = []
    for word in words:
        if word.startswith("?#"):
            for op in word[2:]:
                if op == "!":
                    stack.append(not stack.pop() if stack else False)
                elif op in "|&":
                    right = stack.pop() if stack else True
                    left = stack.pop() if stack else True
                    stack.append(left or right if op == "|" else left and right)
                elif op == ".":
                    stack.append(stack[-1] if stack else True)
                elif op.isdigit():
                    idx = int(op)
                    stack.append(stack[idx] if idx < len(stack) else True)
        else:
            stack.append(_query_compare(device, path, row, word))
    return all(stack)


# --------------------------------------------------------------------------------------------
# One client connection
# --------------------------------------------------------------------------------------------

class Connection:
    def __init__(self, server: Simulator, sock: socket.socket, peer: str) -> None:
        self.server = server
        self.device = server.device
        self.sock = sock
        self.peer = peer
        self.write_lock = threading.Lock()
        self.logged_in = False
        self.user = ""
        self.streams: dict[str, threading.Event] = {}
        self.closed = False

    # -- output --
    def send(self, reply: str, attrs: dict[str, Any] | None = None, tag: str | None = None) -> None:
        words = [reply]
        for key, value in (attrs or {}).items():
            words.append(f"={key}={value}")
        if tag is not None:
            words.append(f".tag={tag}")
        data = encode_sentence(words)
        with self.write_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def trap(self, message: str, tag: str | None, category: int | None = None) -> None:
        attrs: dict[str, Any] = {}
        if category is not None:
            attrs["category"] = category
        attrs["message"] = message
        self.send("!trap", attrs, tag)
        self.send("!done", None, tag)

    # -- loop --
    def run(self) -> None:
        reader = SentenceReader(self.sock)
        try:
            while not self.closed:
                sentence = reader.read()
                if sentence is None:
                    break
                if not sentence:
                    continue
                self.handle(sentence)
        except (OSError, ssl.SSLError) as exc:
            LOG.debug("connection %s: %s", self.peer, exc)
        finally:
            for event in self.streams.values():
                event.set()
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def handle(self, sentence: list[str]) -> None:
        command = sentence[0]
        attrs: list[tuple[str, str]] = []
        queries: list[str] = []
        tag: str | None = None
        proplist: list[str] | None = None
        for word in sentence[1:]:
            if word.startswith(".tag="):
                tag = word[5:]
            elif word.startswith("=.proplist="):
                proplist = [p for p in word[len("=.proplist="):].split(",") if p]
            elif word.startswith("="):
                name, _, value = word[1:].partition("=")
                attrs.append((name, value))
            elif word.startswith("?"):
                queries.append(word)
            else:
                self.trap(f"unknown word {word}", tag)
                return
        if not command.startswith("/"):
            self.trap("no such command", tag)
            return
        if command == "/login":
            self.login(dict(attrs), tag)
            return
        if not self.logged_in:
            self.trap("not logged in", tag)
            return
        if command == "/quit":
            self.send("!fatal", {"message": "session terminated on request"})
            with self.write_lock:
                self.closed = True
            self.sock.close()
            return
        if command == "/cancel":
            self.cancel(dict(attrs), tag)
            return
        try:
            with self.device.lock:
                self.dispatch(command, attrs, queries, tag, proplist)
        except Trap as exc:
            self.trap(exc.message, tag, exc.category)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must not look like a hung switch
            LOG.exception("internal error on %s", command)
            self.trap(f"failure: simulator internal error: {exc}", tag)

    def login(self, attrs: dict[str, str], tag: str | None) -> None:
        name = attrs.get("name")
        password = attrs.get("password")
        if name is None or password is None:
            self.trap("invalid user name or password (6)", tag)
            return
        with self.device.lock:
            ok = self.device.authenticate(name, password, self.peer)
        if not ok:
            LOG.info("login of %s from %s refused", name, self.peer)
            self.trap("invalid user name or password (6)", tag)
            return
        LOG.info("login of %s from %s", name, self.peer)
        self.logged_in = True
        self.user = name
        self.send("!done", None, tag)

    def cancel(self, attrs: dict[str, str], tag: str | None) -> None:
        target = attrs.get("tag")
        keys = [target] if target is not None else list(self.streams)
        for key in keys:
            event = self.streams.get(key)
            if event is not None:
                event.set()
        self.send("!done", None, tag)

    # -- commands --
    def dispatch(self, command: str, attrs: list[tuple[str, str]], queries: list[str],
                 tag: str | None, proplist: list[str] | None) -> None:
        parts = [p for p in command.split("/") if p]
        if parts == ["export"]:
            self.export(dict(attrs), tag)
            return
        if parts == ["system", "reboot"]:
            self.send("!done", None, tag)
            return
        if parts == ["system", "backup", "save"]:
            self.device.backup_save(dict(attrs))
            self.send("!done", None, tag)
            return
        if parts == ["system", "backup", "load"]:
            # The configuration is replaced, then the switch reboots: the session ends.
            self.device.backup_load(dict(attrs))
            self.send("!done", None, tag)
            with self.write_lock:
                self.closed = True
            self.sock.close()
            return
        path, verb = tuple(parts[:-1]), parts[-1]
        device = self.device
        if path not in device.menus:
            raise Trap("no such command prefix")
        menu = device.menus[path]
        if verb in ("print", "getall"):
            flags = {name for name, _ in attrs}
            rows = device.print_rows(path, stats="stats" in flags)
            rows = [r for r in rows if run_query(device, path, r, queries)]
            if "count-only" in flags:
                self.send("!done", {"ret": len(rows)}, tag)
                return
            for row in rows:
                if proplist is not None:
                    row = {k: v for k, v in row.items() if k in proplist}
                self.send("!re", row, tag)
            if not rows and device.vtuple >= (7, 18):
                self.send("!empty", None, tag)
            self.send("!done", None, tag)
        elif verb == "get":
            a = dict(attrs)
            rows = device.print_rows(path)
            if menu.kind != "single":
                wanted = {r[".id"] for r in device.find_rows(path, a.get(".id", a.get("number", "")))}
                rows = [r for r in rows if r[".id"] in wanted]
            value_name = a.get("value-name")
            if not rows:
                raise Trap("no such item")
            if value_name:
                if value_name not in rows[0]:
                    raise Trap(f"no such property {value_name}")
                self.send("!done", {"ret": rows[0][value_name]}, tag)
            else:
                self.send("!done", {"ret": ";".join(f"{k}={v}" for k, v in rows[0].items())}, tag)
        elif verb == "add":
            ident = device.cmd_add(path, attrs)
            self.send("!done", {"ret": ident}, tag)
        elif verb == "set":
            device.cmd_set(path, attrs)
            self.send("!done", None, tag)
        elif verb == "remove":
            device.cmd_remove(path, attrs)
            self.send("!done", None, tag)
        elif verb in ("enable", "disable") and path in (("interface", "ethernet"), ("interface", "bridge"),
                                                        ("interface", "bridge", "port"), ("ip", "address"),
                                                        ("ip", "service"), ("user",)):
            device.cmd_enable_disable(path, attrs, disable=verb == "disable")
            self.send("!done", None, tag)
        elif verb == "monitor" and path == ("interface", "ethernet"):
            self.monitor(attrs, tag, proplist)
        elif verb == "reset-counters" and path == ("interface", "ethernet"):
            numbers = next((v for k, v in attrs if k in (".id", "numbers")), "")
            for row in device.find_rows(path, numbers):
                device.reset_counters(row)
            self.send("!done", None, tag)
        elif verb == "read" and path == ("file",):
            self.send("!re", device.file_read(dict(attrs)), tag)
            self.send("!done", None, tag)
        else:
            raise Trap(f"no such command or directory ({verb})")

    def export(self, attrs: dict[str, str], tag: str | None) -> None:
        text = self.device.export()
        filename = attrs.get("file")
        if filename:
            if not filename.endswith(".rsc"):
                filename += ".rsc"
            self.device.write_file(filename, text)
        # Without file= RouterOS prints the script on the console; the API gets nothing back.
        self.send("!done", None, tag)

    def monitor(self, attrs: list[tuple[str, str]], tag: str | None, proplist: list[str] | None) -> None:
        a = dict(attrs)
        unknown = [k for k in a if k not in (".id", "numbers", "once", "interval", "duration")]
        if unknown:
            raise Trap(f"unknown parameter {unknown[0]}")
        numbers = a.get("numbers", a.get(".id"))
        if numbers is None:
            raise Trap("no such item")
        rows = self.device.find_rows(("interface", "ethernet"), numbers)

        def sample() -> list[dict[str, str]]:
            out = []
            for row in rows:
                result = self.device.monitor(row)
                if proplist is not None:
                    result = {k: v for k, v in result.items() if k in proplist}
                out.append(result)
            return out

        if "once" in a:
            for result in sample():
                self.send("!re", result, tag)
            self.send("!done", None, tag)
            return
        # Streaming: one !re per interface per second, until /cancel (needs a .tag) or disconnect.
        key = tag if tag is not None else f"untagged-{id(rows)}"
        stop = threading.Event()
        self.streams[key] = stop

        def stream() -> None:
            while not stop.is_set() and not self.closed:
                with self.device.lock:
                    results = sample()
                for result in results:
                    self.send("!re", result, tag)
                stop.wait(1.0)
            self.streams.pop(key, None)
            self.send("!trap", {"category": 2, "message": "interrupted"}, tag)
            self.send("!done", None, tag)

        threading.Thread(target=stream, daemon=True).start()


# --------------------------------------------------------------------------------------------
# The listening server
# --------------------------------------------------------------------------------------------

class Simulator:
    def __init__(self, device: Device, host: str = "127.0.0.1", port: int = 8729,
                 certfile: str | None = None, keyfile: str | None = None) -> None:
        self.device = device
        self.host = host
        self.tls = certfile is not None
        self.ssl_context: ssl.SSLContext | None = None
        if certfile is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.ssl_context = ctx
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(32)
        self.listener.settimeout(0.5)  # here, not in serve_forever: a shutdown may come before the thread runs
        self.port: int = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _service_allows(self, peer_ip: str) -> bool:
        name = "api-ssl" if self.tls else "api"
        with self.device.lock:
            if not self.device.controller_port_up():
                return False
            rows = [r for r in self.device.rows[("ip", "service")] if r.get("name") == name]
        if not rows:
            return False
        row = rows[0]
        if row.get("disabled"):
            return False
        allowed = str(row.get("address", ""))
        if not allowed:
            return True
        ip = ipaddress.ip_address(peer_ip)
        return any(ip in ipaddress.ip_network(net, strict=False) for net in allowed.split(",") if net)

    def _serve_client(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        if not self._service_allows(addr[0]):
            LOG.info("refusing %s: service disabled, address not allowed or the controller's port disabled", addr[0])
            sock.close()
            return
        if self.ssl_context is not None:
            try:
                sock.settimeout(10)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            except (ssl.SSLError, OSError) as exc:
                LOG.debug("TLS handshake with %s failed: %s", addr[0], exc)
                sock.close()
                return
        Connection(self, sock, addr[0]).run()

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                sock, addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            sock.settimeout(None)
            threading.Thread(target=self._serve_client, args=(sock, addr), daemon=True).start()

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self.listener.close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=2)
