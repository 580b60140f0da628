"""Multi-process start-up: one JAX process per host (TPU pods) or per GPU.

Every process runs the same program and calls `initialize` before anything
touches a device. The cluster's shape comes from explicit values (flags,
else JAXFP_COORDINATOR, JAXFP_NUM_PROCESSES, JAXFP_PROCESS_ID), else from
the cluster JAX detects (Cloud TPU VM, SLURM step, Open MPI job), else it
is one process; `mode` ('auto', 'on', 'off'; --distributed or
JAXFP_DISTRIBUTED) forces the question. Launching and design:
docs/multihost.md.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from absl import flags
from absl import logging
import jax

# The pmap axis along which the global batch is split over every device of
# every process: the trainer's steps, BatchNorm statistics and the losses'
# global normalisers name it.
AXIS = 'batch'

ENV_COORDINATOR = 'JAXFP_COORDINATOR'
ENV_NUM_PROCESSES = 'JAXFP_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAXFP_PROCESS_ID'
ENV_MODE = 'JAXFP_DISTRIBUTED'
MODES = ('auto', 'on', 'off')


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `initialize` will do; `resolve` derives it without side effects."""
  initialize: bool
  source: str  # 'explicit', 'cluster:<jax detection method>', 'single', ...
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  # Passed to jax.distributed.initialize; None = every detector JAX has.
  cluster_detection_method: str | None = None


@dataclasses.dataclass(frozen=True)
class Topology:
  process_index: int
  process_count: int
  local_device_count: int
  device_count: int
  platform: str
  source: str


def _env_int(env: Mapping[str, str], name: str) -> int | None:
  """The integer in variable `name` of `env`; None if unset or empty."""
  value = env.get(name)
  if value is None or value == '':
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'{name}={value!r} is not an integer') from None


def _running_in_cloud_tpu_vm() -> bool:
  # JAX's own test for a Cloud TPU VM; private, so a missing one is "no".
  try:
    from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return bool(getattr(cloud_tpu_init, 'running_in_cloud_tpu_vm', False))


def _detected_cluster(environ: Mapping[str, str]) -> str | None:
  """JAX's name for the cluster the environment shows, if it has several
  processes.

  Only evident clusters are handed to JAX's detection: on an ordinary
  machine inside Kubernetes (a CI runner) JAX's catch-all detection would
  warn about a missing package or query the API server.
  """
  if (environ.get('TPU_WORKER_HOSTNAMES') or
      environ.get('TPU_PROCESS_ADDRESSES')):
    return 'gketpu'
  slurm_step = all(k in environ for k in (
      'SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_PROCID', 'SLURM_LOCALID'))
  if slurm_step and (_env_int(environ, 'SLURM_NTASKS') or 1) > 1:
    return 'slurm'
  if ('OMPI_MCA_orte_hnp_uri' in environ and
      (_env_int(environ, 'OMPI_COMM_WORLD_SIZE') or 1) > 1):
    return 'ompi'
  if _running_in_cloud_tpu_vm():
    return 'gcetpu'
  return None


def resolve(coordinator_address: str | None = None,
            num_processes: int | None = None,
            process_id: int | None = None,
            mode: str | None = None,
            environ: Mapping[str, str] | None = None) -> Plan:
  """The start-up plan from explicit values (flags over env) and the cluster.

  Raises ValueError on a partial or inconsistent explicit set, naming what
  is wrong, so a mistyped launch fails at once instead of timing out.
  """
  env = os.environ if environ is None else environ
  mode = mode or env.get(ENV_MODE) or 'auto'
  if mode not in MODES:
    raise ValueError(f'distributed mode {mode!r}: use one of {MODES}')
  if mode == 'off':
    return Plan(initialize=False, source='off')
  coordinator = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = (num_processes if num_processes is not None else
           _env_int(env, ENV_NUM_PROCESSES))
  index = (process_id if process_id is not None else
           _env_int(env, ENV_PROCESS_ID))
  given = {'coordinator_address': coordinator, 'num_processes': count,
           'process_id': index}
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if count == 1 and index in (None, 0):
      # A one-process "cluster" needs no coordinator.
      return Plan(initialize=False, source='explicit single process')
    if missing:
      present = [k for k in given if k not in missing]
      raise ValueError(
          f'distributed start-up got {present} but not {missing}: give all '
          f'three (--coordinator_address, '
          f'--num_processes, --process_id or {ENV_COORDINATOR}, '
          f'{ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}) or none')
    if count < 1 or not 0 <= index < count:
      raise ValueError(f'process_id={index} with num_processes={count}: need '
                       '0 <= process_id < num_processes')
    if ':' not in coordinator:
      raise ValueError(f'coordinator_address={coordinator!r}: expected '
                       'host:port of process 0')
    # Explicit values are the whole truth: no detector may override them.
    return Plan(initialize=True, source='explicit',
                coordinator_address=coordinator, num_processes=count,
                process_id=index, cluster_detection_method='deactivate')
  cluster = _detected_cluster(env)
  if cluster:
    return Plan(initialize=True, source=f'cluster:{cluster}',
                cluster_detection_method=cluster)
  if mode == 'on':
    # Let every detector JAX has try; it raises if none fits.
    return Plan(initialize=True, source='cluster:any')
  return Plan(initialize=False, source='single')


def _cpu_may_be_used() -> bool:
  platforms = jax.config.jax_platforms or ''
  return not platforms or 'cpu' in platforms.split(',')


def _orbax_barriers_through_coordinator() -> None:
  """Orbax's barriers as coordination-service barriers, unless set by hand.

  By default Orbax synchronises processes with a device collective; a gloo
  collective gives up when its last process arrives 30 s after the first,
  which an uneven compile or data build easily exceeds.
  """
  name = 'experimental_orbax_use_distributed_barrier'
  # Importing Orbax defines the flag.
  import orbax.checkpoint  # pylint: disable=g-import-not-at-top,unused-import
  if name in flags.FLAGS and not flags.FLAGS[name].present:
    flags.FLAGS[name].value = True


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               mode: str | None = None,
               initialization_timeout: int = 300) -> Topology:
  """Joins this process to its cluster (see the module doc); idempotent.

  Must run before any computation or device query. Logs and returns the
  topology.
  """
  if jax.distributed.is_initialized():
    return _log_topology('already initialized')
  plan = resolve(coordinator_address, num_processes, process_id, mode)
  if not plan.initialize:
    return _log_topology(plan.source)
  if _cpu_may_be_used():
    if jax.config.jax_cpu_collectives_implementation in (None, 'none'):
      # Without cross-process collectives a CPU pmap over several processes
      # fails at its first psum; gloo needs nothing but TCP.
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    _orbax_barriers_through_coordinator()
  logging.info('Starting JAX distributed (%s): coordinator %s, %s processes, '
               'this is process %s', plan.source, plan.coordinator_address,
               plan.num_processes, plan.process_id)
  jax.distributed.initialize(
      coordinator_address=plan.coordinator_address,
      num_processes=plan.num_processes, process_id=plan.process_id,
      cluster_detection_method=plan.cluster_detection_method,
      initialization_timeout=initialization_timeout)
  return _log_topology(plan.source)


def chief_first(fn, timeout_s: int = 4 * 3600):
  """Runs fn() on process 0, then on the others once it has finished.

  Dataset builds write a shared cache; the other processes then only read.
  They wait at barriers of JAX's coordination service, not in device
  collectives: a build can take far longer than a collective waits for its
  last participant (30 s for gloo's CPU collectives). All leave together.
  """
  if jax.process_count() == 1:
    return fn()
  # Orbax's helper reaches the coordination service's barriers.
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  barrier = ocp.multihost.get_barrier_sync_fn()
  chief = jax.process_index() == 0
  result = fn() if chief else None
  barrier(key='jaxfp_chief_done', timeout_ms=timeout_s * 1000)
  if not chief:
    result = fn()
  barrier(key='jaxfp_all_done', timeout_ms=timeout_s * 1000)
  return result


class ChiefRefused(ValueError):
  """Process 0's user error, raised on the other processes of its run."""


def chief_decides(fn, name: str, timeout_s: int = 600):
  """fn() on process 0 alone; its user error stops every process.

  For a check that one process must make for the run (taking the workdir's
  lock): process 0 runs fn(); if it raises a ValueError or OSError, the
  others raise ChiefRefused with the same message, so every process stops
  with one line instead of waiting for process 0 at the next collective.
  The outcome travels through the coordination service's key-value store,
  not a device collective. Returns fn()'s result on process 0, None on the
  others.
  """
  if jax.process_count() == 1:
    return fn()
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  client = ocp.multihost.get_jax_distributed_client()
  barrier = ocp.multihost.get_barrier_sync_fn()
  key = f'jaxfp_decision/{name}'
  # Every process arrives before process 0 writes: a key of an earlier call
  # (a sweep's previous run) is deleted by then.
  barrier(key=f'{key}/start', timeout_ms=timeout_s * 1000)
  result, error = None, None
  if jax.process_index() == 0:
    try:
      result = fn()
    except (OSError, ValueError) as e:
      error = e
    client.key_value_set(key, '' if error is None else f'!{error}',
                         allow_overwrite=True)
  outcome = client.blocking_key_value_get(key, timeout_s * 1000)
  barrier(key=f'{key}/read', timeout_ms=timeout_s * 1000)
  if jax.process_index() == 0:
    client.key_value_delete(key)
    if error is not None:
      raise error
    return result
  if outcome:
    raise ChiefRefused(f'process 0: {outcome[1:]}')
  return None


def _log_topology(source: str) -> Topology:
  topology = Topology(
      process_index=jax.process_index(), process_count=jax.process_count(),
      local_device_count=jax.local_device_count(),
      device_count=jax.device_count(), platform=jax.default_backend(),
      source=source)
  # One process needs no news; several say who is who.
  log = logging.info if topology.process_count > 1 else logging.debug
  log(
      'JAX process %d of %d (%s): %d local %s devices %s, %d in all',
      topology.process_index, topology.process_count, source,
      topology.local_device_count, topology.platform, jax.local_devices(),
      topology.device_count)
  return topology
