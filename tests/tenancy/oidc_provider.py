"""A real OpenID Connect provider for the tests, assembled from authlib's server classes
(its Flask authorization server, the authorization code grant with OpenID Connect's
ID token and PKCE) and served by werkzeug on 127.0.0.1 in a thread.

It signs ID tokens with an RSA key of its own (published at ``/jwks``), shows a
sign-in and consent page at ``/authorize`` (email, password, "Allow"), and checks a
client's secret, redirect URI, PKCE verifier and nonce as a provider does.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str = "openid email profile"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None


class Provider:
    """The provider: ``users`` maps an email to a password; ``issuer`` is its URL."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.token_requests = 0
        app = Flask(__name__)
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._build()

    def add_client(self, client_id: str, secret: str, redirect_uri: str) -> None:
        """Register a client (or one more redirect URI of a client already known)."""
        known = self.clients.get(client_id)
        if known is not None and known.client_secret == secret:
            known.redirect_uris.append(redirect_uri)
        else:
            self.clients[client_id] = Client(client_id, secret, [redirect_uri])

    def start(self) -> Provider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(10)

    def _build(self) -> None:
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                provider.codes[code] = Code(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.payload.scope,
                    user=req.user,
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                return found if found is not None and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> str:
                provider.token_requests += 1
                return authorization_code.user

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return provider.key

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "test-key"}

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                return {"iss": provider.issuer, "aud": [client.client_id]}

            def generate_user_info(self, user: str, scope: str) -> dict[str, Any]:
                return {"sub": f"sub-{user}", "email": user, "email_verified": True}

        server = AuthorizationServer(
            self.app,
            query_client=lambda client_id: provider.clients.get(client_id),
            save_token=lambda token, req: None,
        )
        server.register_grant(
            CodeGrant, [IdToken(require_nonce=True), CodeChallenge(required=True)]
        )

        @self.app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": provider.issuer,
                "authorization_endpoint": f"{provider.issuer}/authorize",
                "token_endpoint": f"{provider.issuer}/token",
                "jwks_uri": f"{provider.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }

        @self.app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return {"keys": [provider.key.as_dict(private=False)]}

        @self.app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            if request.method == "GET":
                server.get_consent_grant(end_user=None)  # refuses a bad client or redirect
                return _consent_page("")
            email = request.form.get("email", "")
            if provider.users.get(email) != request.form.get("password"):
                return _consent_page("wrong email or password"), 401
            return server.create_authorization_response(grant_user=email)

        @self.app.post("/token")
        def token() -> Any:
            return server.create_token_response()


def _consent_page(error: str) -> str:
    message = f'<p id="idp-error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html><html><head><title>Test IdP</title></head><body>
    <h1>Test IdP: sign in to continue to Ketch</h1>{message}
    <form method="post">
      <label>Email <input id="idp-email" name="email" type="email"></label>
      <label>Password <input id="idp-password" name="password" type="password"></label>
      <button id="idp-allow" type="submit">Allow</button>
    </form></body></html>"""
