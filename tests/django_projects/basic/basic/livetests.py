"""Live-server tests of ``basic``, run by ``manage.py test basic.livetests``.

tests/integration/test_django_testing.py runs them in a subprocess and checks they pass:
they prove ``ChannelServerLiveServerTestCase`` serves the project on channelserver (HTTP
and WebSocket) against the test database, and that ``ChannelServerProcess`` keeps
``DaphneProcess``' contract (``ready``, ``port``, ``errors``, ``terminate()``).
"""

import urllib.request

from django.test import SimpleTestCase
from websockets.sync.client import connect

from basic.models import Note
from channelserver.testing import ChannelServerLiveServerTestCase, ChannelServerProcess


class LiveServerTests(ChannelServerLiveServerTestCase):
    def test_http_is_served_by_channelserver(self):
        with urllib.request.urlopen(self.live_server_url + "/", timeout=5) as response:
            self.assertEqual(response.status, 200)
            self.assertEqual(response.headers["server"], "channelserver")
            self.assertEqual(response.read(), b"basic ok\n")

    def test_websocket_consumer(self):
        with connect(self.live_server_ws_url + "/ws/echo/", origin=self.live_server_url, open_timeout=5) as ws:
            ws.send("hello")
            self.assertEqual(ws.recv(timeout=5), "v1:hello")

    def test_server_sees_the_test_database(self):
        Note.objects.create(text="written by the test")
        with urllib.request.urlopen(self.live_server_url + "/notes/", timeout=5) as response:
            self.assertEqual(response.read(), b"1")

    def test_static_files(self):
        with urllib.request.urlopen(self.live_server_url + "/static/basic/hello.txt", timeout=5) as response:
            self.assertEqual(response.read(), b"hello static\n")


async def plain_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"plain"})


def get_plain_app():
    return plain_app


def get_broken_app():
    raise RuntimeError("cannot build the application")


class ProcessContractTests(SimpleTestCase):
    def test_ready_port_kwargs_terminate(self):
        process = ChannelServerProcess("127.0.0.1", get_plain_app, kwargs={"server_header": False})
        process.start()
        try:
            self.assertTrue(process.ready.wait(10), "server did not become ready")
            port = process.port.value
            self.assertNotEqual(port, 0)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                self.assertEqual(response.read(), b"plain")
                self.assertIsNone(response.headers["server"])  # kwargs reached the Config
        finally:
            process.terminate()
            process.join(10)
        self.assertEqual(process.exitcode, 0)
        self.assertTrue(process.errors.empty())

    def test_errors_reach_the_parent(self):
        process = ChannelServerProcess("127.0.0.1", get_broken_app)
        process.start()
        error, text = process.errors.get(timeout=10)
        process.join(10)
        self.assertIsInstance(error, RuntimeError)
        self.assertIn("cannot build the application", text)
        self.assertFalse(process.ready.is_set())

    def test_bad_kwargs_are_reported(self):
        process = ChannelServerProcess("127.0.0.1", get_plain_app, kwargs={"ws_max_sise": 10})
        process.start()
        error, _text = process.errors.get(timeout=10)
        process.join(10)
        self.assertIn("did you mean 'ws_max_size'", str(error))
