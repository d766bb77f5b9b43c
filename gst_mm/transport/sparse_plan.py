"""The sparse transport plan ``K`` of one image (:class:`TransportKernel`) and its
differentiable product ``K^T z`` (the loss's only use of it). Built by
:mod:`.kernel` and :mod:`.soft_kernel`; conventions in :mod:`.kernel`'s docstring.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor


class _SparseTransport(torch.autograd.Function):
    """``K^T z`` for the CSR point block of a kernel; backward is a CSR row reduction."""

    @staticmethod
    def forward(ctx, flat: Tensor, crow: Tensor, cols: Tensor, values: Tensor,
                num_points: int) -> Tensor:
        counts = crow[1:] - crow[:-1]
        per_entry = torch.repeat_interleave(flat, counts, output_size=values.numel())
        out = flat.new_zeros(num_points).scatter_add_(0, cols, values * per_entry)
        ctx.save_for_backward(crow, cols, values)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        crow, cols, values = ctx.saved_tensors
        per_entry = grad_out.index_select(0, cols) * values
        grad = torch.segment_reduce(per_entry, 'sum', offsets=crow, unsafe=True)
        return grad, None, None, None, None


class TransportKernel:
    """Sparse GST transport plan ``K`` of one image (``h * w`` cells x ``N`` points [+ bg]).

    Storage is CSR over cells (rows) for the point columns plus a dense background
    column:

    * ``crow`` ``(h * w + 1,)`` int32 row pointers (entries of cell ``i`` are
      ``crow[i]:crow[i + 1]``);
    * ``cols`` ``(nnz,)`` point index, int16 when ``N <= 32767`` else int32;
    * ``values`` ``(nnz,)`` float32;
    * ``background_column`` ``(h * w,)`` float32, ``None`` when built with
      ``background=False``.

    Every row sums to 1 (up to float rounding): mass pruned by truncation was moved
    to the background column (without background, the row was renormalised). A cell
    with no stored entry (far from every Gaussian) is pure background.

    Attributes:
        num_points: ``N``.
        grid_shape: ``(h, w)`` density-map cells.
        stride: input px per cell.
        eps: truncation threshold the kernel was built with; see :func:`build_kernel`
            for the error bound it implies.
        costs: ``(nnz,)`` float32 cost ``c(x_i, y_n)`` of every stored point entry, or
            ``None`` (set by :func:`.kernel.with_entry_costs`; the background column
            costs nothing), for the plan's transport cost :meth:`transport_cost`.
    """

    def __init__(self, crow: Tensor, cols: Tensor, values: Tensor,
                 background: Optional[Tensor], num_points: int,
                 grid_shape: Tuple[int, int], stride: float, eps: float,
                 costs: Optional[Tensor] = None) -> None:
        self.crow = crow
        self.cols = cols
        self.values = values
        self.background_column = background
        self.num_points = int(num_points)
        self.grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
        self.stride = float(stride)
        self.eps = float(eps)
        if costs is not None and costs.shape != values.shape:
            raise ValueError(f'costs must be ({values.numel()},) like the values, got '
                             f'{tuple(costs.shape)}')
        self.costs = costs

    @classmethod
    def from_coo(cls, cells: Tensor, cols: Tensor, values: Tensor,
                 background: Optional[Tensor], num_points: int,
                 grid_shape: Tuple[int, int], stride: float, eps: float
                 ) -> 'TransportKernel':
        """Build from unsorted, duplicate-free ``(cell, point, value)`` triplets."""
        n_cells = int(grid_shape[0]) * int(grid_shape[1])
        order = torch.argsort(cells.to(torch.int32))
        counts = torch.bincount(cells, minlength=n_cells)
        crow = torch.zeros(n_cells + 1, dtype=torch.int32, device=values.device)
        crow[1:] = torch.cumsum(counts, 0).to(torch.int32)
        col_dtype = torch.int16 if num_points <= torch.iinfo(torch.int16).max else torch.int32
        return cls(crow, cols.index_select(0, order).to(col_dtype),
                   values.index_select(0, order).float(),
                   background, num_points, grid_shape, stride, eps)

    # -- properties
    @property
    def background(self) -> bool:
        """Whether the kernel has the virtual background column."""
        return self.background_column is not None

    @property
    def num_cells(self) -> int:
        return self.grid_shape[0] * self.grid_shape[1]

    @property
    def num_columns(self) -> int:
        """``N + 1`` with background, ``N`` without."""
        return self.num_points + int(self.background)

    @property
    def nnz(self) -> int:
        """Stored point entries (the background column is stored densely)."""
        return int(self.values.numel())

    @property
    def device(self) -> torch.device:
        return self.values.device

    def nbytes(self) -> int:
        """Bytes held by the kernel's tensors."""
        tensors = [self.crow, self.cols, self.values]
        tensors += [t for t in (self.background_column, self.costs) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def rows(self) -> Tensor:
        """Cell index of every stored entry, ``(nnz,)`` int64 (expanded from ``crow`` on
        each access; with ``cols`` and ``values`` it is the COO form of the kernel)."""
        counts = (self.crow[1:] - self.crow[:-1]).long()
        return torch.repeat_interleave(
            torch.arange(self.num_cells, device=self.device), counts, output_size=self.nnz)

    # -- use
    def transport(self, density: Tensor) -> Tensor:
        """``K^T density``: the mass each point (and the background) receives.

        Args:
            density: ``(h, w)``, ``(1, h, w)`` or ``(h * w,)`` non-negative density.

        Returns:
            ``(N + 1,)`` (last entry background) or ``(N,)`` without background;
            differentiable w.r.t. ``density``.
        """
        flat = density.reshape(-1)
        if flat.numel() != self.num_cells:
            raise ValueError(f'density has {flat.numel()} cells, kernel expects '
                             f'{self.grid_shape} = {self.num_cells}')
        out = _SparseTransport.apply(flat, self.crow.long(), self.cols.long(),
                                     self.values.to(flat.dtype), self.num_points)
        if self.background_column is None:
            return out
        bg = (self.background_column.to(flat.dtype) * flat).sum().reshape(1)
        return torch.cat([out, bg])

    def transport_cost(self, density: Tensor) -> Tensor:
        """The plan's transport cost ``W = sum_i z_i sum_n K[i, n] c(x_i, y_n)`` of
        ``P = diag(density) K`` (point columns; the background costs nothing), a scalar
        differentiable w.r.t. ``density`` (one more sparse product, with ``K * c``).

        Raises:
            ValueError: the kernel carries no costs (:func:`.kernel.with_entry_costs`).
        """
        if self.costs is None:
            raise ValueError('this TransportKernel has no entry costs; build it with a cost '
                             "(LoadTransportKernel(cost='sqdist'), kernel.with_entry_costs)")
        flat = density.reshape(-1)
        if flat.numel() != self.num_cells:
            raise ValueError(f'density has {flat.numel()} cells, kernel expects '
                             f'{self.grid_shape} = {self.num_cells}')
        weighted = (self.values * self.costs).to(flat.dtype)
        return _SparseTransport.apply(flat, self.crow.long(), self.cols.long(), weighted,
                                      self.num_points).sum()

    def dense_costs(self) -> Tensor:
        """Dense ``(h * w, N)`` cost matrix of the stored entries (0 elsewhere)."""
        if self.costs is None:
            raise ValueError('this TransportKernel has no entry costs')
        out = torch.zeros(self.num_cells, self.num_points, dtype=self.costs.dtype,
                          device=self.device)
        out[self.rows, self.cols.long()] = self.costs
        return out

    def dense(self) -> Tensor:
        """Dense ``(h * w, N + 1)`` float32 matrix (last column background); ``(h * w, N)``
        when built without background."""
        out = torch.zeros(self.num_cells, self.num_columns, dtype=self.values.dtype,
                          device=self.device)
        out[self.rows, self.cols.long()] = self.values
        if self.background_column is not None:
            out[:, -1] = self.background_column
        return out

    def to(self, device: Union[str, torch.device], non_blocking: bool = False,
           **kwargs) -> 'TransportKernel':
        """Copy on ``device`` (returns ``self`` when already there).

        Accepts ``Tensor.to``'s ``non_blocking`` (MMEngine's data preprocessor moves
        every data-sample field with it); dtype conversions are not supported: the
        kernel keeps its index and value dtypes.
        """
        device = torch.device(device)
        if self.values.device == device:
            return self
        move = dict(non_blocking=non_blocking)
        bg = (None if self.background_column is None else
              self.background_column.to(device, **move))
        costs = None if self.costs is None else self.costs.to(device, **move)
        return TransportKernel(self.crow.to(device, **move), self.cols.to(device, **move),
                               self.values.to(device, **move), bg, self.num_points,
                               self.grid_shape, self.stride, self.eps, costs)

    def __getstate__(self) -> dict:
        # numpy arrays pickle by value: no shared-memory file descriptor per tensor when
        # kernels cross DataLoader workers, and no device in the pickle
        state = dict(self.__dict__)
        for key in ('crow', 'cols', 'values', 'background_column', 'costs'):
            if state.get(key) is not None:
                state[key] = state[key].detach().cpu().numpy()
        return state

    def __setstate__(self, state: dict) -> None:
        """Unpickled kernels live on the CPU."""
        state.setdefault('costs', None)
        for key in ('crow', 'cols', 'values', 'background_column', 'costs'):
            if state[key] is not None:
                state[key] = torch.from_numpy(state[key])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f'TransportKernel(num_points={self.num_points}, grid_shape={self.grid_shape}, '
                f'stride={self.stride}, background={self.background}, nnz={self.nnz}, '
                f'eps={self.eps:g}' + (', costs' if self.costs is not None else '') + ')')
