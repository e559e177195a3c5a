using MlNetFinetune.Evaluation;
using MlNetFinetune.Prediction;

namespace MlNetFinetune.Tests;

/// <summary>The round trip every model format must survive: the saved model scores each held-out file as the Trainer did.</summary>
public static class HeldOutScores
{
    /// <summary>Asserts that <paramref name="classifier"/>, reading each held-out file, predicts the Trainer's label and every class's score within 1e-5.</summary>
    public static void AssertReproduced(ImageClassifier classifier, IEnumerable<HeldOutPrediction> trainerPredictions)
    {
        var classes = classifier.Classes.ToList();
        foreach (var expected in trainerPredictions)
        {
            var actual = classifier.Predict(expected.Path, top: classes.Count);
            Assert.Equal(expected.PredictedLabel, actual.Label);
            foreach (var score in actual.Top)
            {
                var index = classes.IndexOf(score.Label);
                Assert.True(Math.Abs(expected.Scores[index] - score.Score) <= 1e-5,
                    $"{expected.Path}: score of {score.Label} {score.Score} vs trainer {expected.Scores[index]}");
            }
        }
    }
}
