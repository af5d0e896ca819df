"""The echo consumer. The reload test rewrites VERSION while the server runs."""

from channels.generic.websocket import AsyncWebsocketConsumer

VERSION = "v1"


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=f"{VERSION}:{text_data}")
