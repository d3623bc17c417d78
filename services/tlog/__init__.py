"""The transparency log as a library (RFC 9162, C2SP signed notes and tiles).

Hashing, proofs, checkpoints, receipts, the tile wire format, a verifying
client and the witness: everything a party outside the audit service needs to
check the log. It imports no server, database or Kafka code, so the portal, the
CLI and an external auditor can depend on it without depending on the server.
"""
