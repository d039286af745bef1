"""IAM service: users, guest players, hosts, tokens, JWKS."""

from services.common import db
from services.common.web import create_app

app = create_app(
    "iam",
    [],
    health={"postgres": db.ping},
    on_startup=[db.open_pool],
    on_shutdown=[db.close_pool],
)
