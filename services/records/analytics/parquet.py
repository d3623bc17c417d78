"""Encrypted Parquet files of the analytic store (Parquet modular encryption, through pyarrow).

Each file is encrypted with AES-GCM under its own data key (uniform
encryption: footer and every column); the data key is wrapped (RFC 3394) by
the store's master key, one of the platform keys held by records alone, and
kept in the file's footer metadata. So a copied file, a backup or a stray
volume snapshot reads as noise without records' key, and a file moved between
deployments does not open. The KMS client here is in-process because the
master key is; a deployment with a KMS implements ``wrap_key``/``unwrap_key``
against it instead.
"""

from __future__ import annotations

import base64
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

MASTER_KEY_ID = "healthgov-analytics"
# How long pyarrow keeps its KMS client and unwrapped keys: for the life of the process (pyarrow's default,
# 10 minutes, would create the client again mid-scan; see ``Cipher._warm``).
KMS_CLIENT_LIFETIME = timedelta(days=365 * 100)


class Unreadable(OSError):
    """A file of the store that this key cannot open (another deployment's, or damaged)."""


class _LocalKms(pe.KmsClient):
    """Wraps each file's data key with the store's master key (the key never leaves this process)."""

    def __init__(self, master: bytes) -> None:
        super().__init__()
        self._master = master

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> bytes:
        if master_key_identifier != MASTER_KEY_ID:
            raise KeyError(master_key_identifier)
        return base64.b64encode(aes_key_wrap(self._master, key_bytes))

    def unwrap_key(self, wrapped_key: bytes, master_key_identifier: str) -> bytes:
        if master_key_identifier != MASTER_KEY_ID:
            raise KeyError(master_key_identifier)
        return aes_key_unwrap(self._master, base64.b64decode(wrapped_key))


class Cipher:
    """The encryption and decryption properties of the store's files."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ValueError("the analytic store's master key is 256 bits")
        self._factory = pe.CryptoFactory(lambda _config: _LocalKms(master))
        self._kms = pe.KmsConnectionConfig()
        self._encryption = pe.EncryptionConfiguration(footer_key=MASTER_KEY_ID, uniform_encryption=True,
                                                      encryption_algorithm="AES_GCM_V1", double_wrapping=False,
                                                      cache_lifetime=KMS_CLIENT_LIFETIME)
        self._decryption = pe.DecryptionConfiguration(cache_lifetime=KMS_CLIENT_LIFETIME)
        self._warm()

    def _warm(self) -> None:
        """Create the KMS client now, in this thread, so that no scan ever asks pyarrow to create it.

        pyarrow creates a KMS client (our Python factory, which needs the GIL) under
        its client-cache mutex, from whichever of its threads opens a file first
        once the cached client has expired. A thread that entered pyarrow holding
        the GIL (a DuckDB scan starting a reader) and waits for that mutex then
        deadlocks with it. A round trip through an in-memory file puts the client in
        the cache while nothing else runs, and the client then never expires.
        """
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"x": [0]}), sink, encryption_properties=self.writer_properties())
        pq.read_table(pa.BufferReader(sink.getvalue()), decryption_properties=self.reader_properties())

    def writer_properties(self) -> pe.FileEncryptionProperties:
        return self._factory.file_encryption_properties(self._kms, self._encryption)

    def reader_properties(self) -> pe.FileDecryptionProperties:
        return self._factory.file_decryption_properties(self._kms, self._decryption)

    def dataset_format(self) -> ds.ParquetFileFormat:
        """A dataset format that decrypts as it scans (for engines reading the files lazily)."""
        config = ds.ParquetDecryptionConfig(self._factory, self._kms, self._decryption)
        return ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
            decryption_config=config))

    def write(self, table: pa.Table, path: Path) -> None:
        """Write atomically: a reader sees the old file or the new one, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp, encryption_properties=self.writer_properties(), compression="zstd")
        os.replace(tmp, path)

    def read(self, path: Path, columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(path, columns=columns, decryption_properties=self.reader_properties(),
                                 partitioning=None)
        except InvalidUnwrap as exc:
            raise Unreadable(f"{path.name}: not this store's key") from exc
