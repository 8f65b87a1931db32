"""The command line's TLS context (``--ssl-*``), with errors that say which file is wrong and why."""

from __future__ import annotations

import argparse
import os
import ssl

from ._values import CLIError

__all__ = ["ssl_context"]

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def _holds(path: str, marker: str) -> bool:
    """Whether the PEM file at ``path`` has a block whose label contains ``marker``."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return any(line.startswith("-----BEGIN ") and marker in line for line in file)
    except OSError:
        return False


def _explain(exc: ssl.SSLError, certfile: str, keyfile: str | None, password: bool) -> str:
    """What a failed ``load_cert_chain`` means, in the terms of the options."""
    text = str(exc).upper()
    key = keyfile or certfile
    if not _holds(certfile, "CERTIFICATE"):
        return f"--ssl-certfile {certfile} holds no PEM certificate"
    if keyfile is None and not _holds(certfile, "PRIVATE KEY"):
        return f"the certificate file {certfile} has no private key: give the key file with --ssl-keyfile"
    if keyfile is not None and not _holds(keyfile, "PRIVATE KEY"):
        return f"--ssl-keyfile {keyfile} holds no PEM private key"
    if "KEY_VALUES_MISMATCH" in text or "KEY VALUES MISMATCH" in text:
        return f"the private key in {key} does not belong to the certificate in {certfile}"
    if _holds(key, "ENCRYPTED") or "DECRYPT" in text or "PASSWORD" in text:
        if not password:
            return f"the private key in {key} is encrypted: give its password with --ssl-keyfile-password"
        return f"cannot decrypt the private key in {key}: wrong --ssl-keyfile-password"
    return f"cannot load the certificate {certfile} with the key {key}: {exc}"


def _no_password() -> bytes:
    return b""  # (instead of OpenSSL asking on the terminal, which a worker does not have)


def ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from the ``--ssl-*`` options, ``None`` without ``--ssl-certfile``.
    Raises :class:`CLIError` with what is wrong."""
    certfile, keyfile = args.ssl_certfile, args.ssl_keyfile
    if certfile is None:
        for flag, value in (("--ssl-keyfile", keyfile), ("--ssl-ca-certs", args.ssl_ca_certs)):
            if value is not None:
                raise CLIError(f"{flag} needs --ssl-certfile")
        return None
    if not os.path.isfile(certfile):
        raise CLIError(f"certificate file not found: {certfile}")
    if keyfile is not None and not os.path.isfile(keyfile):
        raise CLIError(f"key file not found: {keyfile}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    password = args.ssl_keyfile_password
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password if password is None else password)
    except ssl.SSLError as exc:
        raise CLIError(_explain(exc, certfile, keyfile, password is not None)) from None
    except OSError as exc:
        raise CLIError(f"cannot read {exc.filename or certfile}: {exc.strerror or exc}") from None
    if args.ssl_ca_certs is not None:
        if not os.path.isfile(args.ssl_ca_certs):
            raise CLIError(f"CA certificates file not found: {args.ssl_ca_certs}")
        try:
            context.load_verify_locations(cafile=args.ssl_ca_certs)
        except (ssl.SSLError, OSError) as exc:
            raise CLIError(f"cannot load the CA certificates {args.ssl_ca_certs}: {exc}") from None
    if args.ssl_cert_reqs != "none":
        if args.ssl_ca_certs is None:
            raise CLIError(f"--ssl-cert-reqs {args.ssl_cert_reqs} needs --ssl-ca-certs")
        context.verify_mode = _CERT_REQS[args.ssl_cert_reqs]
    if args.ssl_ciphers is not None:
        try:
            context.set_ciphers(args.ssl_ciphers)
        except ssl.SSLError:
            raise CLIError(f"--ssl-ciphers {args.ssl_ciphers!r}: no cipher matches") from None
    return context
