namespace MlNetFinetune.Predictor.Serving;

/// <summary>
/// The request bytes the server holds in memory at once. A request reserves its body's size before reading it and
/// waits, first come first served, while the reservation does not fit; so 64 uploads of 9 MB are read a few at a
/// time instead of all at once. Waiting holds no thread and no body bytes (the client's data stays in the socket).
/// </summary>
public sealed class BodyBudget(long capacity)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<Waiter> _waiters = new();
    private long _available = capacity;

    /// <summary>The whole budget in bytes.</summary>
    public long Capacity { get; } = capacity;

    /// <summary>Bytes reserved now.</summary>
    public long InUse
    {
        get
        {
            lock (_lock)
            {
                return Capacity - _available;
            }
        }
    }

    /// <summary>Requests waiting for their reservation now.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count;
            }
        }
    }

    /// <summary>Reserves <paramref name="bytes"/> (at most <see cref="Capacity"/>), waiting behind earlier reservations until they fit.</summary>
    public async ValueTask<Reservation> ReserveAsync(long bytes, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, Capacity);
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Waiter waiter;
        LinkedListNode<Waiter> node;
        lock (_lock)
        {
            if (_waiters.Count == 0 && bytes <= _available)
            {
                _available -= bytes;
                return new Reservation(this, bytes);
            }

            waiter = new Waiter(bytes);
            node = _waiters.AddLast(waiter);
        }

        await using (cancellationToken.Register(() => Cancel(node)))
        {
            await waiter.Granted.Task.ConfigureAwait(false);
        }

        return new Reservation(this, bytes);
    }

    private void Cancel(LinkedListNode<Waiter> node)
    {
        lock (_lock)
        {
            if (node.List is null)
            {
                return;
            }

            _waiters.Remove(node);
            node.Value.Granted.TrySetCanceled();
            GrantWaiting();
        }
    }

    private void Give(long bytes)
    {
        lock (_lock)
        {
            _available += bytes;
            GrantWaiting();
        }
    }

    private void GrantWaiting()
    {
        while (_waiters.First is { } first && first.Value.Bytes <= _available)
        {
            _available -= first.Value.Bytes;
            _waiters.RemoveFirst();
            first.Value.Granted.TrySetResult();
        }
    }

    private sealed record Waiter(long Bytes)
    {
        public TaskCompletionSource Granted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Bytes reserved for one request; disposing gives them back.</summary>
    public sealed class Reservation : IDisposable
    {
        private readonly BodyBudget _budget;
        private long _bytes;

        internal Reservation(BodyBudget budget, long bytes)
        {
            _budget = budget;
            _bytes = bytes;
        }

        /// <summary>Bytes held.</summary>
        public long Bytes => Volatile.Read(ref _bytes);

        /// <summary>Gives back what exceeds <paramref name="bytes"/>: a chunked body reserved at the limit turned out smaller.</summary>
        public void ShrinkTo(long bytes)
        {
            var excess = Interlocked.Exchange(ref _bytes, Math.Min(bytes, Bytes)) - Math.Min(bytes, Bytes);
            if (excess > 0)
            {
                _budget.Give(excess);
            }
        }

        public void Dispose()
        {
            var bytes = Interlocked.Exchange(ref _bytes, 0);
            if (bytes > 0)
            {
                _budget.Give(bytes);
            }
        }
    }
}
