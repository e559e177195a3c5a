namespace MlNetFinetune.Prediction;

/// <summary>A class and its probability.</summary>
/// <param name="Label">The class name.</param>
/// <param name="Score">Its probability, 0 to 1.</param>
public sealed record LabelScore(string Label, float Score);

/// <summary>The answer for one image: the predicted class and the top classes with their probabilities, best first.</summary>
/// <param name="Label">The predicted class (the first of <paramref name="Top"/>).</param>
/// <param name="Confidence">Its probability, 0 to 1.</param>
/// <param name="Top">The most probable classes, best first; ties in the order of the class names.</param>
public sealed record ClassificationResult(string Label, float Confidence, IReadOnlyList<LabelScore> Top)
{
    /// <summary>Ranks <paramref name="scores"/> (in <paramref name="classes"/> order) and keeps the best <paramref name="top"/>, at least one.</summary>
    internal static ClassificationResult Rank(ReadOnlySpan<float> scores, IReadOnlyList<string> classes, int top)
    {
        var ranked = new LabelScore[scores.Length];
        for (var i = 0; i < scores.Length; i++)
        {
            ranked[i] = new LabelScore(classes[i], scores[i]);
        }

        Array.Sort(ranked, static (a, b) => b.Score.CompareTo(a.Score) is var byScore && byScore != 0 ? byScore : string.CompareOrdinal(a.Label, b.Label));
        return new ClassificationResult(ranked[0].Label, ranked[0].Score, ranked[..Math.Clamp(top, 1, ranked.Length)]);
    }
}
