"""ledger: PostgreSQL refuses a balance below zero itself

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# db.COVERED; the amounts are decimal text, so a negative one starts with a minus sign
NAME = "ck_balances_covered"
RULE = "account = 'world' OR amount NOT LIKE '-%'"


def upgrade() -> None:
    # on PostgreSQL a payment's last write is sent with its COMMIT behind it and its new
    # balances are never read back (db.last_write): this check is what refuses an
    # overdraft there. SQLite checks every balance before writing it (store.apply), and
    # adding a constraint there would rebuild the table
    if op.get_bind().dialect.name == "postgresql":
        op.create_check_constraint(NAME, "balances", RULE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(NAME, "balances", type_="check")
