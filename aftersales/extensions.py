"""The Flask extension objects, created unbound so a host app and tests can share the code.

The models are declared on :class:`Base`, tied to no ``SQLAlchemy()`` object. The module's code
reaches the database through :data:`db`, which answers with the Flask-SQLAlchemy instance the
current app mounted the module with: the host's (``AfterSales(app, db=host_db)``), or
:data:`own_db`, the one the standalone app (and a host without its own) uses.
"""
from typing import Any

from flask import current_app
from flask_babel import Babel
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints so Alembic migrations are the same on SQLite and PostgreSQL.
naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The module's tables (all named ``aftersales_*``), on a metadata of their own."""

    metadata = MetaData(naming_convention=naming_convention)


#: The module's own Flask-SQLAlchemy instance: standalone, or mounted without ``db=``.
own_db = SQLAlchemy(metadata=Base.metadata)

#: Where an app keeps the Flask-SQLAlchemy instance the module uses.
EXTENSION_KEY = "aftersales_db"


class ModuleDatabase:
    """``db.session``, ``db.engine``, ``db.paginate``, ``db.create_all`` of the current app's
    instance (see the module docstring); ``db.metadata`` is the module's own, always."""

    metadata = Base.metadata

    @staticmethod
    def instance() -> SQLAlchemy:
        return current_app.extensions.get(EXTENSION_KEY, own_db)

    @property
    def session(self) -> Any:
        return self.instance().session

    @property
    def engine(self) -> Any:
        return self.instance().engine

    def paginate(self, *args: Any, **kwargs: Any) -> Any:
        return self.instance().paginate(*args, **kwargs)

    def create_all(self) -> None:
        """The module's tables (only those) in the current app's database."""
        Base.metadata.create_all(self.instance().engine)

    def drop_all(self) -> None:
        Base.metadata.drop_all(self.instance().engine)


db = ModuleDatabase()
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
