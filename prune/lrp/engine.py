"""The engine: apply a composite to a model for one forward pass, then undo everything.

Each module's ``forward`` is replaced by an instance attribute for the duration of the pass (and
the attribute removed afterwards, so no hooks or wrappers are left behind). Leaves with a rule run
the rule: its kernel (:mod:`prune.lrp.fast`) with the fast backend where the rule has one, else
its reference form (:mod:`prune.lrp.reference`). Max-pool, flatten, dropout and identity run
natively (their gradient is already the right rule; 2-d max-pools keep only their indices); any
other leaf is an error that names it. A container with a rule runs as one layer; other containers
run their own ``forward`` (or a canonizer's replacement) under the mode of
:mod:`prune.lrp.functional`. Every consumer of a layer output that still owes its kernel's
rescale (:mod:`prune.lrp.fast.flow`) either fuses it (a ReLU) or has it materialised first.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch import Tensor, nn
from torch._C import DisableTorchFunction

from prune.lrp.canonizers import merged_weight_bias, norm_of
from prune.lrp.errors import UnsupportedLayerError
from prune.lrp.fast import kernel_for
from prune.lrp.fast.base import LinearKernel
from prune.lrp.fast.direct import direct_step
from prune.lrp.fast.flow import materialize, materialize_all
from prune.lrp.fast.free import PassKernel
from prune.lrp.fast.max_pool import max_pool
from prune.lrp.fast.program import Program, trace_program
from prune.lrp.functional import OpMode, _tensors
from prune.lrp.reference import reference_apply
from prune.lrp.rules.base import Layer, Op, Rule
from prune.lrp.state import RunState, _live
from prune.lrp.types import (
    DATA_MOVEMENT_TYPES,
    IDENTITY_TYPES,
    LINEAR_TYPES,
    TRANSPARENT_TYPES,
    torch_equivalent,
)

#: The two ways to run a composite's rules: kernels where a rule has one, or reference forms only.
BACKENDS = ("fast", "reference")


def walk(model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    """``(name, module, is_leaf)`` in ``named_modules()`` order, each module once.

    One iterative walk over the child dictionaries: ``named_modules`` plus a ``children()`` test
    per module cost 3x as much, and this runs on every explained batch.
    """
    out: list[tuple[str, nn.Module, bool]] = []
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        children = [(n, c) for n, c in module._modules.items() if c is not None]
        out.append((name, module, not children))
        prefix = f"{name}." if name else ""
        stack.extend((prefix + n, c) for n, c in reversed(children))
    return out


class Engine:
    """Context manager that applies ``composite`` to ``model`` for an explained forward pass.

    The layers are mapped to rules once, when the engine is built (an unsupported layer is an
    error then, before any forward); each ``with engine:`` installs the wrappers, and leaving it
    removes them. One engine serves any number of passes, one at a time, as long as the model's
    structure stays the same (:class:`prune.lrp.Explainer` keeps one for many batches). Run the
    model inside ``with engine:`` through :meth:`forward`.

    Args:
        model: the network (its parameters and buffers are never modified).
        composite: assigns a rule to each layer (see :mod:`prune.lrp.composites`).
        record: names of modules whose output relevance to keep.
        trace: on the first pass, trace the forward with ``torch.fx`` and from then on call the
            wrappers in graph order instead of installing them (:mod:`prune.lrp.fast.program`: the
            same relevance with less work per pass, worth it for many passes). Where the model
            cannot be traced, or a recorded module is a container, the wrappers are installed.
            Only with the fast backend.
        backend: ``"fast"`` runs each rule's kernel where it has one; ``"reference"`` runs every
            rule in its reference form (the rule's formula, one autograd node per layer).

    Attributes:
        run: state of the current pass, shared with the rules.
        modules: ``(name, module, is_leaf)`` of the model, in ``named_modules()`` order.
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Any,
        record: Sequence[str] = (),
        trace: bool = False,
        backend: str = "fast",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown LRP backend {backend!r}; choose from {list(BACKENDS)}")
        self.model, self.composite, self.fast = model, composite, backend == "fast"
        self.modules = walk(model)
        names = [name for name, _, _ in self.modules]
        missing = [n for n in record if n not in set(names)]
        if missing:
            raise KeyError(f"cannot record unknown modules {missing}; known: {names[:20]}...")
        self.record = set(record)
        self.run = RunState()
        self._pass = _PassRecords()  # the record of the backward pass running in each thread
        self._stack: list[str] = []
        self._saved: list[tuple[nn.Module, Any]] = []
        self._recorded_values: dict[int, tuple[weakref.ref, list[Tensor]]] = {}
        self._last_output: dict[nn.Module, Tensor] = {}
        self._merges: dict[nn.Module, nn.Module] = {}
        self._replaced: dict[nn.Module, Callable[..., Any]] = {}
        # a BatchNorm with layers inside (timm's BatchNormAct2d) runs as its norm, then them
        self._norms = {m: norm for _, m, _ in self.modules if (norm := norm_of(m)) is not None}
        if composite.canonizers:
            leaves = [
                self._norms.get(m, m) for _, m, leaf in self.modules if leaf or m in self._norms
            ]
            for canonizer in composite.canonizers:
                self._merges.update(canonizer.merges(leaves))
                self._replaced.update(canonizer.replacements(self.modules))
        self._partners = set(self._merges.values())
        self._op_kernels = {}
        if self.fast:
            for op, rule in composite.op_map.items():
                if (kernel := kernel_for(rule)) is not None:
                    self._op_kernels[op] = kernel
        self._plan = self._build_plan()
        self._forwards = dict(self._plan)  # a module's wrapper, for a program's norm layers
        self._mode = self._new_mode()
        # a recorded container's output is no node of a traced graph: such engines install;
        # a rule's reference form is its own node, so only the fast backend traces
        self._trace = (
            trace
            and self.fast
            and not any(name in self.record for name, _, leaf in self.modules if not leaf)
        )
        self._program: Program | None = None
        self._running: Program | None = None
        self._mode_on = False

    def _new_mode(self) -> OpMode:
        return OpMode(
            self.run, self.composite.op_map, self._op_kernels, self.before_inplace, self.where
        )

    def _build_plan(self) -> list[tuple[nn.Module, Callable[..., Any]]]:
        """``(module, forward)`` for every module: the rule of each layer, chosen once."""
        state: dict[str, Any] = {}
        plan, unsupported = [], []
        self._natives: dict[nn.Module, Callable[..., Any]] = {}
        #: modules with children that run as one layer (a program calls them, never traces in)
        self._whole: set[nn.Module] = set()
        inside: str | None = None  # a container with a rule runs as one layer: skip its inside
        for name, module, leaf in self._with_standins():
            if inside is not None and name.startswith(inside):
                continue
            inside = None
            if module in self._norms and module not in self._replaced:
                norm, part = self._norms[module], f"{name}.<norm>"  # a name nobody records
                if norm in self._merges:
                    forward = self._merged(part, norm, self._merges[norm])
                elif (rule := self.composite.rule_for(state, name, norm)) is not None:
                    forward = self._ruled(part, norm, rule)
                else:
                    unsupported.append(f"{name} ({type(module).__name__})")
                    continue
                plan.append((module, self._norm_then_children(name, module, forward)))
                self._whole.add(module)
                continue
            leaf = leaf and module not in self._replaced
            rule = None if leaf else self.composite.rule_for(state, name, module)
            if rule is not None:  # a container with a rule of its own
                inside = f"{name}." if name else ""
                forward = self._ruled(name, module, rule)
                self._whole.add(module)
            elif module in self._merges:
                forward = self._merged(name, module, self._merges[module])
            elif not leaf:
                if type(module) is nn.Sequential and name not in self.record:
                    continue  # only calls its children, which have their own wrappers
                forward = self._container(name, module)
            elif (rule := self.composite.rule_for(state, name, module)) is not None:
                forward = self._ruled(name, module, rule)
            elif self.composite.is_transparent(module):
                forward = self._transparent(name, module)
                self._natives[module] = forward
            else:
                unsupported.append(f"{name or '<root>'} ({type(module).__name__})")
                continue
            plan.append((module, forward))
        if unsupported:
            raise UnsupportedLayerError(
                f"composite {type(self.composite).__name__} has no LRP rule for layer(s) "
                f"{', '.join(unsupported)}; add them to its layer map or name map"
            )
        return plan

    def _with_standins(self) -> list[tuple[str, nn.Module, bool]]:
        """The model's modules, each one replaced by a module (a canonizer's stand-in, whose
        layers share the replaced module's parameters) followed by the stand-in's own modules,
        named ``<name>.<sub>``: their layers get rules like the model's."""
        out = []
        for name, module, leaf in self.modules:
            out.append((name, module, leaf))
            standin = self._replaced.get(module)
            if isinstance(standin, nn.Module):
                out.extend((f"{name}.<{sub}>", m, is_leaf) for sub, m, is_leaf in walk(standin)[1:])
        return out

    # -- setup / teardown ---------------------------------------------------------------------
    def __enter__(self) -> Engine:
        if self._saved or self._running is not None:
            raise RuntimeError("this LRP engine is already running a pass (it is not re-entrant)")
        self.run = RunState()
        self.run.passes = int(getattr(self.composite, "num_maps", 1))
        self._recorded_values = {}
        self._mode = self._new_mode()
        program = self._traced()
        self._running = program if program is not None and program.usable() else None
        try:
            for bn, linear in self._merges.items():  # from the current weights and statistics
                self.run.params[linear] = merged_weight_bias(linear, bn)
            if self._running is not None:  # a program skips the stand-ins' forwards
                for standin in self._replaced.values():
                    if callable(bind := getattr(standin, "bind", None)):
                        bind()
            for module, forward in () if self._running is not None else self._plan:
                self._saved.append((module, module.__dict__.get("forward")))
                # an instance attribute, as `module.forward =` would set it, without
                # nn.Module.__setattr__'s type checks (per module, per pass)
                module.__dict__["forward"] = forward
            if self._running is None or self._running.needs_mode:
                self._mode.__enter__()
                self._mode_on = True
        except BaseException:
            self._uninstall()
            raise
        return self

    def forward(self, x: Tensor) -> Any:
        """Run the model on ``x`` under the composite (inside ``with engine:``)."""
        if self._running is not None:
            return self._running(x, self._stack, self.run.read)
        return self.model(x)

    def _traced(self) -> Program | None:
        """The traced program, traced on the first pass (the model is in eval mode then)."""
        if self._trace:
            self._trace = False
            everything = self._with_standins()
            leaves = {m for _, m, leaf in everything if leaf and m not in self._replaced}
            leaves |= self._whole
            if any(c not in self._forwards for m in self._norms for c in m.children()):
                return None  # a norm layer's child without a wrapper of its own
            wrappers = {m: forward for m, forward in self._forwards.items() if m in leaves}
            own = {module for _, module, _ in self.modules}
            standins = {m: name for name, m, _ in everything if m not in own}
            custom = {
                module: self._under_mode(forward)
                for module, forward in self._natives.items()
                if not isinstance(module, TRANSPARENT_TYPES)
            }
            modules = [module for _, module, _ in self.modules]
            self._program = trace_program(
                self.model, wrappers, custom, modules, self._replaced, standins
            )
        return self._program

    def _under_mode(self, forward: Callable[..., Any]) -> Callable[..., Any]:
        """A custom native layer's wrapper (``lrp_transparent``) for a program run without the
        functional mode: its ops still run under the mode, as they would installed."""

        def step(*args: Any, **kwargs: Any) -> Any:
            with self._mode:
                return forward(*args, **kwargs)

        return step

    def __exit__(self, *exc: object) -> None:
        try:
            if self._mode_on:
                self._mode_on = False
                self._mode.__exit__(*exc)
        finally:
            self._uninstall()

    def _uninstall(self) -> None:
        # the deferred records' closures refer to the run state that holds them: drop the cycle
        # now (the forward is over), or each pass's relevance would wait for the collector
        self.run.deferred.clear()
        self.run.watched.clear()  # in-place changes are the forward's: it is over
        self.run.materialized.clear()
        for module, previous in reversed(self._saved):
            if previous is None:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = previous
        self._saved.clear()
        self._last_output.clear()
        self._stack.clear()
        self._running = None

    # -- module wrappers ----------------------------------------------------------------------
    def _original(self, module: nn.Module) -> Callable[..., Any]:
        if module in self._replaced:
            return self._replaced[module]
        previous = module.__dict__.get("forward")
        return previous if previous is not None else type(module).forward.__get__(module)

    def _finish(self, name: str, module: nn.Module, out: Any) -> Any:
        if name in self.record and isinstance(out, Tensor) and out.requires_grad:
            if not getattr(out.grad_fn, "records_fused", True):  # a ReLU must not bypass it
                out.grad_fn.fusable = False
            self.run.keep_scale(out)  # its gradient must arrive exact (RunState.scale_free)
            self._attach_record(name, out)
        if module in self._partners:
            self._last_output[module] = out
        return out

    def _plain(self, name: str, module: nn.Module) -> bool:
        """Whether ``_finish`` has nothing to do for this module (set at build time)."""
        return name not in self.record and module not in self._partners

    def materialize(self, out: Tensor) -> Tensor:
        """``out`` with its owed rescale applied, so that its gradient is the relevance form."""
        return materialize(out, self.run)

    def _container(self, name: str, module: nn.Module) -> Callable[..., Any]:
        original, plain = self._original(module), self._plain(name, module)

        def forward(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(name or f"<root {type(module).__name__}>")
            try:
                out = original(*args, **kwargs)
            finally:
                self._stack.pop()
            return out if plain else self._finish(name, module, out)

        return forward

    def _transparent(self, name: str, module: nn.Module) -> Callable[..., Any]:
        original, plain = self._original(module), self._plain(name, module)

        pool = type(module) is nn.MaxPool2d and "forward" not in module.__dict__
        builtin = isinstance(module, TRANSPARENT_TYPES)
        moves = isinstance(module, DATA_MOVEMENT_TYPES)
        identity = isinstance(module, IDENTITY_TYPES) or torch_equivalent(module) is nn.Dropout

        def forward(*args: Any, **kwargs: Any) -> Any:
            run = self.run
            if identity and plain and len(args) == 1 and not kwargs and not module.training:
                # an identity in eval mode (dropout, StochasticDepth): its input as it is, any
                # rescale it owes left for its consumer (an in-place one then works too)
                return args[0]
            if moves and not self._mode_on and len(args) == 1 and not kwargs:
                # a traced program: the layer on one tensor that owes nothing, called directly
                (x,) = args
                if isinstance(x, Tensor) and id(x) not in run.pending:
                    out = original(x)
                    if x in run.roots:
                        run.roots.add(out)
                    return out if plain else self._finish(name, module, out)
            args = materialize_all(args, run)
            run.leaf_depth += 1
            try:
                out = max_pool(module, args[0]) if pool and len(args) == 1 else None
                if out is None:
                    out = original(*args, **kwargs)
            finally:
                run.leaf_depth -= 1
            if builtin and not self._mode_on and any(run.is_root(a) for a in _tensors(args)):
                # a program without the functional mode (prune.lrp.fast.program): what the mode
                # does for the model input in a built-in native layer is done here
                if moves and isinstance(out, Tensor):
                    run.roots.add(out)  # an alias of the input
                else:
                    run.root_other_used = True
            return out if plain else self._finish(name, module, out)

        return forward

    def _ruled(self, name: str, module: nn.Module, rule: Rule) -> Callable[..., Any]:
        kernel = kernel_for(rule) if self.fast else None
        if kernel is None:
            return self._reference(name, module, rule)
        fuses = type(kernel) is PassKernel and isinstance(module, nn.ReLU)
        linear, plain = isinstance(kernel, LinearKernel), self._plain(name, module)
        direct = direct_step(module, kernel, fuses)

        def forward(x: Tensor) -> Tensor:
            run = self.run
            if direct is not None and not self._mode_on:  # a traced program's common case
                out = direct(x, run)
                if out is not None:
                    return out if plain else self._finish(name, module, out)
            if not fuses:
                x = materialize(x, run)
            if not linear:
                run.root_other_used |= run.is_root(x)
            run.inside += 1
            try:
                with DisableTorchFunction():  # the mode has nothing to do inside a rule
                    out = kernel.apply(module, x, run)
            finally:
                run.inside -= 1
            return out if plain else self._finish(name, module, out)

        return forward

    def _reference(self, name: str, module: nn.Module, rule: Rule) -> Callable[..., Any]:
        """The wrapper of a layer whose rule runs in its reference form."""
        plain, linear = self._plain(name, module), isinstance(module, LINEAR_TYPES)
        forward_of, inplace = type(module).forward, getattr(module, "inplace", False) is True

        def layer_forward(*xs: Tensor) -> Tensor:  # out of place: the node keeps its input
            return forward_of(module, *(x.clone() for x in xs) if inplace else xs)

        op = None if linear else Op(layer_forward, module)

        def forward(*args: Tensor) -> Tensor:
            run = self.run
            args = materialize_all(args, run)
            if linear:
                weight, bias = run.weight_bias(module)
                layer = Layer(module, weight, bias, args[0].shape)
            run.inside += 1
            try:
                with DisableTorchFunction():
                    out = reference_apply(rule, layer if linear else op, args, run)
            finally:
                run.inside -= 1
            return out if plain else self._finish(name, module, out)

        return forward

    def _norm_then_children(
        self, name: str, module: nn.Module, norm: Callable[..., Any]
    ) -> Callable[..., Any]:
        """The wrapper of a BatchNorm with layers inside: ``norm`` (its BatchNorm part, merged
        or with its rule), then its children in order (their own wrappers: installed, or called
        directly by a traced program, which installs none)."""
        children, plain = list(module.children()), self._plain(name, module)

        def forward(x: Tensor) -> Tensor:
            out = norm(x)
            program = self._running is not None
            for child in children:
                out = self._forwards[child](out) if program else child(out)
            return out if plain else self._finish(name, module, out)

        return forward

    def _merged(self, name: str, bn: nn.Module, linear: nn.Module) -> Callable[..., Any]:
        def forward(x: Tensor) -> Tensor:
            if self._last_output.pop(linear, None) is not x:
                raise RuntimeError(
                    f"BatchNorm {name!r} was merged into the layer before it in registration "
                    f"order, but in the forward pass its input comes from elsewhere; pass "
                    f"canonizers=[] to the composite and give BatchNorm a rule instead"
                )
            return self._finish(name, bn, x)

        return forward

    # -- recording ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def recording(self) -> Iterator[dict[str, Tensor]]:
        """A backward pass run inside, in this thread, fills the dict yielded with the relevance
        at each recorded output, ``{name: Tensor}`` (passes in other threads fill their own)."""
        store: dict[str, Tensor] = {}
        self._pass.store = store
        try:
            yield store
        finally:
            self._pass.store = None

    def _attach_record(self, name: str, out: Tensor) -> None:
        run, records = self.run, self._pass

        def attach(t: Tensor, value: Tensor | None = None, alias: Tensor | None = None) -> None:
            # Relevance at t is t * grad(t) (t's gradient is in relevance form), with t's values
            # at this point: before_inplace copies them if t (or what it is a view of) changes.
            # The hook lives on t's autograd node and must not reference t itself: a cycle
            # through that node is invisible to Python's garbage collector and would keep every
            # explained batch's graph alive. It holds t's values (detached).
            is_root, owner = run.is_root(t), t if alias is None else alias
            holder = [value] if value is not None else _live(self._recorded_values, owner)
            if holder is None:  # (ids of freed tensors are reused: _live checks the owner)
                holder = [t.detach()]
                self._recorded_values[id(owner)] = (weakref.ref(owner), holder)

            def hook(grad: Tensor) -> None:
                store = records.store  # the pass running in this thread (recording())
                if store is None:
                    return
                gradient_is_relevance = run.root_rule_used and is_root
                rel = grad if gradient_is_relevance else holder[0] * grad
                store[name] = store[name] + rel if name in store else rel

            t.register_hook(hook)

        if run.pending_epsilon(out) is not None:
            # Its gradient is not in relevance form until a consumer applies the owed rescale,
            # so each consumer records the share it carries (a ReLU: y * grad(y)); this needs
            # no stabilised copy of the output (flow.py).
            run.defer_record(out, attach)
        else:
            attach(out)  # the share of the consumers that go through its node
            if getattr(out.grad_fn, "fusable", False):
                # a ReLU fused with the node bypasses it and records its own share, y * grad(y)
                run.defer_record(out, attach)

    def before_inplace(self, t: Tensor) -> None:
        """Keep the pre-modification value of a recorded output that is about to change in place,
        and what the rescale nodes that read ``t`` in the backward need of it."""
        self.run.changing(t)
        holder = _live(self._recorded_values, t)
        if holder is not None:
            holder[0] = holder[0].clone()

    def where(self) -> str:
        """Name of the module whose forward is running (for error messages)."""
        return repr(self._stack[-1]) if self._stack else "the model"


class _PassRecords(threading.local):
    """Per thread: the dict that the record hooks of the running backward pass add into."""

    store: dict[str, Tensor] | None = None
