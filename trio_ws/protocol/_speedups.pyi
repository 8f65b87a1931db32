from typing import final

from ._events import BytesMessage, Event, TextMessage

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes, /) -> bytes: ...
def parse_messages(
    buf: bytes | bytearray | memoryview,
    pos: int,
    masked: bool,
    limit: int | None,
    events: list[Event],
    text_type: type[TextMessage],
    bytes_type: type[BytesMessage],
    /,
) -> tuple[int, int, int]: ...
@final
class PayloadBuffer:
    filled: int
    capacity: int
    def __init__(self, size: int) -> None: ...
    def add(self, data: bytes | bytearray | memoryview, mask: bytes | None, /) -> None: ...
    def take(self) -> bytes: ...
