"""What ``vulture`` reports that is in use, for ``vulture src/migrator vulture_whitelist.py
--min-confidence 60`` (docs/architecture.md, Tests). Not imported by anything; each name is
listed with where its use is."""

# click commands: registered by their decorators, found through cli/main.py's COMMANDS.
audit_command
demo_command
discover_command
execute_command
init
plan_command
report_command
serve_command
seed_command
status_command
verify_command
worker_command
_.obj  # click.Context.obj, read by click's pass_obj decorators (cli/context.py)

# Attributes read by the libraries they are set for.
_.encoding  # requests.Response.encoding (clouds/raw_reads.py), read by .text / .json()
_.content_length  # aiohttp StreamResponse.content_length (sim), sent as Content-Length
_.isolation_level  # the DBAPI connection's (store/db.py), read by the sqlite3 driver
_begin  # a SQLAlchemy "begin" listener, registered by @event.listens_for (store/db.py)
type_annotation_map  # read by SQLAlchemy's DeclarativeBase (store/models.py)
__getattr__  # PEP 562 lazy names of migrator.transfer

# Dataclass and table fields that only reach JSON output (asdict) or the database.
drift_checked  # verify --format json
failed_at  # status --format json
last_change  # status --format json
stopped_at  # the workers table's column
rehearse_command  # click command (cli/rehearse.py)
rollback_command  # click command (cli/rollback.py)

# Keys of the step spec's lookup (migrator/spec.py), read with lookup.get("...") by handlers.
subnetpool_id
subnetpool
external_network_id
external_network
content_format
legacy_disk_format
source_volume_type
source_status

# Keys of an undo step's spec (migrator/spec.py UndoSpec), read with spec.get("...") by
# handlers/undo.py and handlers/undo_servers.py.
original_checkpoint
restore_source
source_ports
source_volumes

# Used by the tests (tests/ is not scanned).
detect  # tests/sim/test_glance_formats.py
previous_owner  # tests/engine/test_leases.py
renew_leases  # tests/engine/test_leases.py
StepSpec  # engine.runs.StepSpec: tests/engine, benchmarks
descendants  # tests/engine/test_runs.py
get_step  # tests/engine
fire  # tests/engine, benchmarks
read_password_file  # tests/handlers/test_passwords.py
load_ca  # tests/clouds/test_tls.py
delete_keypair  # tests/clouds/test_target.py
find_project_by_name  # tests/clouds/test_target.py
find_network_by_name  # tests/clouds/test_target.py
wait_for_network_active  # tests/clouds/test_target.py

# TargetCloud verbs the rollback (handlers/undo.py) calls, some as
# getattr(tc, f"delete_{kind}").
delete_project
delete_user
delete_security_group
delete_security_group_rule
revoke_project_role
remove_router_interface
