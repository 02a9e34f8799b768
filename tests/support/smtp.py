"""A minimal SMTP receiver for the notification tests (RFC 5321's plain path, no TLS,
AUTH accepted as given), on a free loopback port.

    async with SmtpReceiver() as smtp:
        url = smtp.apprise_url("night@example.com")   # mailto://127.0.0.1:PORT?...
        (mail,) = await smtp.wait_for(1)
        mail.recipients, mail.subject, mail.text
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from typing import Final

from tests.support.loopback import LoopbackReceiver, close_writer

__all__ = ["Mail", "SmtpReceiver"]

LINE_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class Mail:
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain", "html"))
        return "" if part is None else str(part.get_content())


@dataclass
class SmtpReceiver(LoopbackReceiver[Mail]):
    what = "mails"

    @property
    def mails(self) -> list[Mail]:
        return self.received

    def apprise_url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=bellhop@example.com&to={to}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        sender, recipients = "", list[str]()
        try:
            await reply("220 receiver ESMTP")
            while True:
                raw = await asyncio.wait_for(reader.readline(), LINE_TIMEOUT_S)
                if not raw:
                    return
                verb, _, arg = raw.decode("latin-1").rstrip("\r\n").partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "HELO"):
                    await reply(
                        "250-receiver\r\n250 AUTH PLAIN LOGIN" if verb == "EHLO" else "250 ok"
                    )
                elif verb == "AUTH":
                    await reply("235 ok")
                elif verb == "MAIL":
                    sender, recipients = arg.partition(":")[2].strip(" <>"), []
                    await reply("250 ok")
                elif verb == "RCPT":
                    recipients.append(arg.partition(":")[2].strip(" <>"))
                    await reply("250 ok")
                elif verb == "DATA":
                    await reply("354 end with .")
                    lines: list[bytes] = []
                    while (
                        line := await asyncio.wait_for(reader.readline(), LINE_TIMEOUT_S)
                    ) not in (
                        b".\r\n",
                        b".\n",
                        b"",
                    ):
                        lines.append(line[1:] if line.startswith(b"..") else line)
                    await self._record(Mail(sender, tuple(recipients), b"".join(lines)))
                    await reply("250 queued")
                elif verb == "QUIT":
                    await reply("221 bye")
                    return
                else:  # RSET, NOOP and the rest
                    await reply("250 ok")
        except (OSError, TimeoutError, UnicodeDecodeError):
            pass
        finally:
            await close_writer(writer)
