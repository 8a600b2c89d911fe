"""``hawser image sign``: cosign-format signatures that a signature policy checks."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import UsageError

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser


def sign(p: Parser) -> Handler:
    """Sign IMAGE (in a registry, e.g. 127.0.0.1:5000/team/app:1.0) with an
    ECDSA P-256 key as cosign does: the signature is pushed beside it under the
    tag sha256-DIGEST.sig. With --generate-key PREFIX, write a new key pair
    (PREFIX.key, PREFIX.pub) instead."""
    p.add_argument("--key", metavar="KEY.pem", help="The private key (PEM, unencrypted) to sign with.")
    p.add_argument("--generate-key", metavar="PREFIX", help="Write a new key pair PREFIX.key and PREFIX.pub.")
    p.add_argument("--plain-http", action="store_true", help="Talk http, not https, to the registry.")
    p.add_argument("image", metavar="IMAGE", nargs="?")
    return _sign


def _sign(ctx: CliContext, a: Namespace) -> None:
    if a.generate_key:
        if a.key or a.image:
            raise UsageError("--generate-key takes no --key and no IMAGE")
        from hawser.images import generate_signing_key

        private, public = generate_signing_key(a.generate_key)
        echo(f"wrote {private} and {public}")
        return
    if not a.key or not a.image:
        raise UsageError("give --key KEY.pem and IMAGE (or --generate-key PREFIX)")
    from hawser.images import sign_image

    digest, signature = sign_image(ctx.config, a.image, a.key, plain_http=a.plain_http)
    echo(f"signed {a.image} ({digest}): {signature.digest}")
