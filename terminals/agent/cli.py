"""`yikatong agent`: run the card agent beside a PC/SC reader (entry-point plugin).

The terminal's request-signing key comes from a file holding its hex value, written
at key injection; the agent refuses a key file that group or others can read.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

DEFAULT_LISTEN = "127.0.0.1:7101"


def add_agent(
    commands: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    parser = commands.add_parser(
        "agent",
        help="run the card agent beside a card reader (HIS workstations, kiosks)",
        description="Reads social security cards from a PC/SC reader, authenticates them"
        " through the engine (9301 + 1101) and serves a small HTTP API on localhost.",
    )
    parser.add_argument("--engine-url", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--reader", required=True, help="PC/SC reader name (see pcsc_scan -r)")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="host:port of the local API")
    parser.add_argument("--terminal-id", required=True)
    parser.add_argument("--key-file", required=True, type=Path, help="terminal key, hex")
    parser.add_argument("--fixmedins-code", required=True)
    parser.add_argument("--fixmedins-name", required=True)
    parser.add_argument("--admdvs", required=True, help="the institution's region (6 digits)")
    parser.add_argument("--opter", required=True, help="operator number")
    parser.set_defaults(plugin_main=_main, plugin_needs_database=False)


def read_key_file(path: Path) -> bytes:
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"yikatong agent: --key-file {path}: cannot read: {exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SystemExit(
            f"yikatong agent: --key-file {path}: readable by group or others"
            f" (mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SystemExit(f"yikatong agent: --key-file {path}: not hex") from None
    if len(key) < 16:
        raise SystemExit(f"yikatong agent: --key-file {path}: key shorter than 16 bytes")
    return key


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"yikatong agent: --listen {value!r}: expected host:port")
    return host, int(port)


async def _main(args: argparse.Namespace, dsn: str) -> None:
    from card.pcsc import PcscReader
    from terminals.agent.core import CardAgent
    from terminals.agent.http import AgentApp
    from terminals.client import Client, Credentials

    host, port = _listen(args.listen)
    creds = Credentials(
        terminal_id=args.terminal_id,
        mac_key=read_key_file(args.key_file),
        fixmedins_code=args.fixmedins_code,
        fixmedins_name=args.fixmedins_name,
        mdtrtarea_admvs=args.admdvs,
        opter=args.opter,
    )
    async with aiohttp.ClientSession() as session:
        client = Client(args.engine_url, creds, session=session)
        agent = CardAgent(PcscReader(args.reader), client)
        app = AgentApp(agent, watch_reader=PcscReader(args.reader))
        runner = web.AppRunner(app.build(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        print(f"card agent on http://{host}:{port} for reader {args.reader!r}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
