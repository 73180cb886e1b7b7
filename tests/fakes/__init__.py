"""Faithful fakes of the upstream AI protocols FrontDesk talks to, served over real loopback HTTP.

    fake = OpenAIFake(api_key="sk-test", model="gpt-4o-mini")
    async with FakeServer(fake) as base_url:          # or fake.serve()
        client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-test")
        fake.token_rate = 50                          # knobs: plain attributes
        fake.enqueue("error", "error")                # the next two requests fail with 500
        ...
        fake.requests[-1].json["messages"]            # what was received

`DifyFake` works the same way (POST /v1/chat-messages). `ThreadedFakeServer(fake)` is the
synchronous variant: `with ThreadedFakeServer(fake) as base_url:`. See server.py for the knobs.
"""

from tests.fakes.dify_fake import Conversation, DifyFake, DifyKnobs
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer, Knobs, Mode, RecordedRequest, ThreadedFakeServer

__all__ = [
    "Conversation",
    "DifyFake",
    "DifyKnobs",
    "FakeServer",
    "Knobs",
    "Mode",
    "OpenAIFake",
    "RecordedRequest",
    "ThreadedFakeServer",
]
