using MlNetFinetune.Predictor.Serving;

namespace MlNetFinetune.Tests;

public sealed class BodyBudgetTests
{
    [Fact]
    public async Task ReservationsBeyondTheBudgetWaitInArrivalOrder()
    {
        // Given a budget of 100 bytes, 80 of them taken
        var budget = new BodyBudget(100);
        var first = await budget.ReserveAsync(80, CancellationToken.None);

        // When a large and then a small request arrive
        var large = budget.ReserveAsync(60, CancellationToken.None).AsTask();
        var small = budget.ReserveAsync(10, CancellationToken.None).AsTask();

        // Then both wait (the small one would fit, but must not overtake), and both get in once the first is done
        Assert.False(large.IsCompleted);
        Assert.False(small.IsCompleted);
        Assert.Equal(2, budget.Waiting);
        first.Dispose();
        using var largeReservation = await large.WaitAsync(TimeSpan.FromSeconds(10));
        using var smallReservation = await small.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(70, budget.InUse);
    }

    [Fact]
    public async Task ACancelledWaiterLeavesTheQueueAndShrinkingGivesBytesBack()
    {
        var budget = new BodyBudget(100);
        var chunked = await budget.ReserveAsync(100, CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var gaveUp = budget.ReserveAsync(50, cancel.Token).AsTask();
        var next = budget.ReserveAsync(30, CancellationToken.None).AsTask();

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gaveUp);
        chunked.ShrinkTo(20);

        using var nextReservation = await next.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(50, budget.InUse);
        chunked.Dispose();
        Assert.Equal(30, budget.InUse);
    }
}
