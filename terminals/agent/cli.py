"""`yikatong agent`: run the card agent beside a PC/SC reader (entry-point plugin).

The terminal's request-signing key comes from a file holding its hex value, written
at key injection; the agent refuses a key file that group or others can read
(`load_terminal_key` is the one place that loads it). Clients authenticate with the
install's bearer token (`--token-file`, created 0600 when missing; terminals.agent.
token). The local API listens on loopback only unless `--allow-non-loopback-listen`
says otherwise, which is printed as a warning. PINs are required by default (a
kiosk); `--no-require-pin` is for a staffed HIS desk (docs/CARD_AGENT.md).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from terminals.agent import limits
from terminals.agent.access import AccessPolicy
from terminals.agent.token import TokenFileError, default_token_path, load_or_create_token

DEFAULT_LISTEN = "127.0.0.1:7101"


def add_agent(
    commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    parser = commands.add_parser(
        "agent",
        help="run the card agent beside a card reader (HIS workstations, kiosks)",
        description="Reads social security cards from a PC/SC reader, authenticates them"
        " through the engine (9301 + 1101) and serves a small authenticated HTTP API on"
        " localhost.",
    )
    parser.add_argument("--engine-url", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--reader", required=True, help="PC/SC reader name (see pcsc_scan -r)")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="host:port of the local API")
    _add_access_options(parser)
    parser.add_argument("--terminal-id", required=True)
    parser.add_argument(
        "--key-file",
        required=True,
        type=Path,
        help="terminal key file: a TR-31 block (with --kbpk-file) or a hex key, mode 0600",
    )
    parser.add_argument(
        "--kbpk-file",
        type=Path,
        default=None,
        help="the key-block protection key that unwraps a TR-31 --key-file (mode 0600)",
    )
    parser.add_argument("--fixmedins-code", required=True)
    parser.add_argument("--fixmedins-name", required=True)
    parser.add_argument("--admdvs", required=True, help="the institution's region (6 digits)")
    parser.add_argument("--opter", required=True, help="operator number")
    parser.set_defaults(plugin_main=_main, plugin_needs_database=False)


def _add_access_options(parser: argparse.ArgumentParser) -> None:
    """Who may use the agent and how (docs/CARD_AGENT.md): listen, token, origins, PIN
    and the engine's deadline."""
    parser.add_argument(
        "--allow-non-loopback-listen",
        action="store_true",
        help="accept a --listen address other than loopback (not recommended)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="the clients' bearer token, created 0600 when missing"
        " (default $XDG_STATE_HOME/yikatong/agent.token)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a kiosk UI's exact origin, e.g. https://kiosk.example (repeatable; no wildcard)",
    )
    parser.add_argument(
        "--require-pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="release person data only after the card verified the PIN (default; use"
        " --no-require-pin on a staffed HIS desk)",
    )
    parser.add_argument(
        "--allow-last-pin-try",
        action="store_true",
        help="send VERIFY even with one try left (a staffed counter only)",
    )
    parser.add_argument(
        "--engine-timeout-s",
        type=float,
        default=limits.ENGINE_TIMEOUT_S,
        help="budget for the engine calls of one card flow (seconds)",
    )


def load_terminal_key(args: argparse.Namespace) -> bytes:
    """The terminal's request-signing key, the one place the agent loads it: a TR-31
    block wrapped under the KBPK of `--kbpk-file` (as `yikatong hsm
    install-terminal-key` stores it), or a legacy hex key; either file 0600."""
    from terminals.keyfile import KeyFileError
    from terminals.keyfile import load_terminal_key as load

    try:
        return load(args.key_file, args.kbpk_file)
    except KeyFileError as exc:
        raise SystemExit(f"yikatong agent: --key-file: {exc}") from None


def listen_address(value: str, *, allow_non_loopback: bool) -> tuple[str, int, bool]:
    """(host, port, is_loopback) of `--listen`; a non-loopback address needs the
    explicit flag, and then a loud warning goes to stderr."""
    host, _, port = value.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not bare or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"yikatong agent: --listen {value!r}: expected host:port")
    try:
        loopback = ipaddress.ip_address(bare).is_loopback
    except ValueError:
        loopback = bare == "localhost"
    if not loopback:
        if not allow_non_loopback:
            raise SystemExit(
                f"yikatong agent: --listen {value!r}: not a loopback address. The agent hands"
                " out person data and must only be reachable from this machine; use"
                " 127.0.0.1:PORT, or add --allow-non-loopback-listen if you really must"
            )
        print(
            f"WARNING: yikatong agent listens on {value}, which is NOT loopback: other"
            " machines can reach the card agent. Only the bearer token protects it now;"
            " firewall the port.",
            file=sys.stderr,
            flush=True,
        )
    return bare, int(port), loopback


def _access(args: argparse.Namespace, path: Path, host: str, loopback: bool) -> AccessPolicy:
    try:
        token = load_or_create_token(path)
    except TokenFileError as exc:
        raise SystemExit(f"yikatong agent: --token-file {exc}") from None
    extra = () if loopback else (f"[{host}]" if ":" in host else host,)
    try:
        return AccessPolicy.build(
            token.value, allow_origins=args.allow_origin, extra_host_names=extra
        )
    except ValueError as exc:
        raise SystemExit(f"yikatong agent: --allow-origin {exc}") from None


async def _main(args: argparse.Namespace, dsn: str) -> None:
    from card.pcsc import PcscReader
    from terminals.agent.core import CardAgent
    from terminals.agent.http import AgentApp
    from terminals.client import Client, Credentials

    host, port, loopback = listen_address(
        args.listen, allow_non_loopback=args.allow_non_loopback_listen
    )
    token_path = args.token_file or default_token_path()
    lo, hi = limits.ENGINE_DEADLINE_MIN_S, limits.ENGINE_DEADLINE_MAX_S
    if not lo <= args.engine_timeout_s <= hi:
        raise SystemExit(f"yikatong agent: --engine-timeout-s: {lo:g} to {hi:g} seconds")
    access = _access(args, token_path, host, loopback)
    creds = Credentials(
        terminal_id=args.terminal_id,
        mac_key=load_terminal_key(args),
        fixmedins_code=args.fixmedins_code,
        fixmedins_name=args.fixmedins_name,
        mdtrtarea_admvs=args.admdvs,
        opter=args.opter,
    )
    async with aiohttp.ClientSession() as session:
        client = Client(args.engine_url, creds, session=session)
        agent = CardAgent(
            PcscReader(args.reader),
            client,
            require_pin=args.require_pin,
            allow_last_pin_try=args.allow_last_pin_try,
            engine_timeout_s=args.engine_timeout_s,
        )
        app = AgentApp(
            agent, access=access, engine_url=args.engine_url, watch_reader=PcscReader(args.reader)
        )
        runner = web.AppRunner(app.build(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        print(
            f"card agent on http://{args.listen} for reader {args.reader!r};"
            f" token file {token_path};"
            f" require-pin {'on' if args.require_pin else 'off'};"
            f" allowed origins: {', '.join(sorted(access.allow_origins)) or 'none'}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
