"""The native half of haypack (pyo3). Use the classes in ``haypack``; these are their engines."""

from typing import Any, List, Optional, Tuple

__version__: str

_Row = Tuple[str, int, int, int, int, Optional[str]]
_Credentials = Optional[Tuple[str, str]]

class NativeArchive:
    def __new__(
        cls,
        url: str,
        endpoint_url: Optional[str] = None,
        region: Optional[str] = None,
        credentials: _Credentials = None,
        cache_dir: Optional[str] = None,
        manifest: Optional[bytes] = None,
        index_memory: Optional[int] = None,
    ) -> "NativeArchive": ...
    def __getnewargs__(self) -> Tuple[Any, ...]: ...
    @property
    def url(self) -> str: ...
    @property
    def index_memory(self) -> Optional[int]: ...
    @property
    def generation(self) -> int: ...
    @property
    def records(self) -> int: ...
    def manifest_json(self) -> bytes: ...
    def get(self, key: str) -> bytes: ...
    def contains(self, key: str) -> bool: ...
    def stat(self, key: str) -> _Row: ...
    def list_page(self, prefix: str, after: Optional[str], limit: int) -> Tuple[List[_Row], bool]: ...
    def index_parts(self, at_least: int) -> List[Tuple[str, int]]: ...
    def range_entries(self, start: str, end: Optional[str], prefix: str) -> List[_Row]: ...
    def get_many(self, keys: List[str]) -> List[bytes]: ...
    def verify(self) -> Tuple[int, int, int, List[str]]: ...
    def stream(self, key: str) -> Tuple["NativeStream", _Row]: ...

class NativeStream:
    def next_piece(self) -> bytes: ...
    def close(self) -> None: ...

class NativeWriter:
    def __new__(
        cls,
        url: str,
        endpoint_url: Optional[str] = None,
        region: Optional[str] = None,
        credentials: _Credentials = None,
        codec: str = "zstd",
        level: Optional[int] = None,
        pack_size: Optional[int] = None,
        dict: str = "off",
    ) -> "NativeWriter": ...
    def write(
        self,
        key: str,
        data: Any,
        mtime: Optional[float] = None,
        mode: Optional[int] = None,
        content_type: Optional[str] = None,
    ) -> None: ...
    def commit(self) -> Tuple[int, int, Optional[int]]: ...
    def segment(self) -> Optional[str]: ...
    def close(self) -> None: ...

def commit(
    url: str,
    segments: List[str],
    endpoint_url: Optional[str] = None,
    region: Optional[str] = None,
    credentials: _Credentials = None,
    keep_last: bool = False,
) -> Tuple[int, int, Optional[int], List[str]]: ...
def pack(
    src: str,
    dest: str,
    endpoint_url: Optional[str] = None,
    region: Optional[str] = None,
    credentials: _Credentials = None,
    codec: str = "zstd",
    level: Optional[int] = None,
    pack_size: Optional[int] = None,
    dict: str = "off",
    force: bool = False,
    prefix: str = "",
    skip_unreadable: bool = False,
    format: Optional[str] = None,
) -> Tuple[int, int, int, List[Tuple[str, str]]]: ...
