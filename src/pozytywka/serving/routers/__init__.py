"""The service's routes by area, one ``APIRouter`` each, in the order ``create_app`` includes
them (the order of the OpenAPI document)."""

from . import operations, personalisation, playlists, skip, writes

ROUTERS = (operations.router, playlists.router, skip.router, personalisation.router, writes.router)
