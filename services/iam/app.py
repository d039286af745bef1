"""IAM service: users, guest players, hosts, tokens, JWKS (Litestar app on granian)."""

from services.common import db
from services.common.web import create_app
from services.iam.controllers import IamController, provide_iam
from services.iam.gateway import GatewayController, load_gateway_keys
from services.iam.service import get_iam_service

app = create_app(
    "iam",
    [IamController, GatewayController],
    health={"postgres": db.ping},
    on_startup=[db.open_pool, get_iam_service().load_keys, load_gateway_keys],
    on_shutdown=[db.close_pool],
    dependencies={"iam": provide_iam},
    description="Identity: guest players, hosts, access and refresh tokens, JWKS.",
)
