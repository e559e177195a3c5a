// ML.NET's sample samples/csharp/getting-started/DeepLearning_ImageClassification_Training (dotnet/machinelearning-samples),
// Train and Predict programs, with `using Microsoft.ML.Vision;` changed to `using MlNetFinetune;` and the package
// reference changed; the image set is a folder given on the command line instead of a download, files are listed in a
// fixed order, and the console helpers print plain lines that scripts/package-test.sh compares.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetFinetune;
using static Microsoft.ML.Transforms.ValueToKeyMappingEstimator;

internal static class Program
{
    // train <image folder> <model.zip> <folder of images to predict>  |  predict <model.zip> <folder of images to predict>
    private static int Main(string[] args)
    {
        if (args.Length == 4 && args[0] == "train")
        {
            Train(args[1], args[2], args[3]);
            return 0;
        }

        if (args.Length == 3 && args[0] == "predict")
        {
            Predict(args[1], args[2]);
            return 0;
        }

        Console.Error.WriteLine("usage: train <images> <model.zip> <images to predict> | predict <model.zip> <images to predict>");
        return 2;
    }

    private static void Train(string fullImagesetFolderPath, string outputMlNetModelFilePath, string imagesFolderPathForPredictions)
    {
        var mlContext = new MLContext(seed: 1);

        // 2. Load the initial full image-set into an IDataView and shuffle so it'll be better balanced
        IEnumerable<ImageData> images = LoadImagesFromDirectory(folder: fullImagesetFolderPath, useFolderNameAsLabel: true);
        IDataView fullImagesDataset = mlContext.Data.LoadFromEnumerable(images);
        IDataView shuffledFullImageFilePathsDataset = mlContext.Data.ShuffleRows(fullImagesDataset);

        // 3. Load Images with in-memory type within the IDataView and Transform Labels to Keys (Categorical)
        IDataView shuffledFullImagesDataset = mlContext.Transforms.Conversion.
                MapValueToKey(outputColumnName: "LabelAsKey", inputColumnName: "Label", keyOrdinality: KeyOrdinality.ByValue)
            .Append(mlContext.Transforms.LoadRawImageBytes(
                                            outputColumnName: "Image",
                                            imageFolder: fullImagesetFolderPath,
                                            inputColumnName: "ImagePath"))
            .Fit(shuffledFullImageFilePathsDataset)
            .Transform(shuffledFullImageFilePathsDataset);

        // 4. Split the data 80:20 into train and test sets, train and evaluate.
        var trainTestData = mlContext.Data.TrainTestSplit(shuffledFullImagesDataset, testFraction: 0.2);
        IDataView trainDataView = trainTestData.TrainSet;
        IDataView testDataView = trainTestData.TestSet;

        // 5. Define the model's training pipeline using DNN default values
        var pipeline = mlContext.MulticlassClassification.Trainers
                .ImageClassification(featureColumnName: "Image",
                                     labelColumnName: "LabelAsKey",
                                     validationSet: testDataView)
            .Append(mlContext.Transforms.Conversion.MapKeyToValue(outputColumnName: "PredictedLabel",
                                                                  inputColumnName: "PredictedLabel"));

        // 6. Train/create the ML model
        var watch = Stopwatch.StartNew();
        ITransformer trainedModel = pipeline.Fit(trainDataView);
        watch.Stop();
        Console.WriteLine($"Training took: {watch.ElapsedMilliseconds / 1000} seconds");

        // 7. Get the quality metrics (accuracy, etc.)
        EvaluateModel(mlContext, testDataView, trainedModel);

        // 8. Save the model
        mlContext.Model.Save(trainedModel, trainDataView.Schema, outputMlNetModelFilePath);
        Console.WriteLine($"Model saved to: {outputMlNetModelFilePath}");

        // 9. Try predictions simulating an end-user app
        var predictionEngine = mlContext.Model.CreatePredictionEngine<InMemoryImageData, ImagePrediction>(trainedModel);
        foreach (var imageToPredict in LoadInMemoryImagesFromDirectory(imagesFolderPathForPredictions, false))
        {
            var prediction = predictionEngine.Predict(imageToPredict);
            Console.WriteLine($"PREDICTION {imageToPredict.ImageFileName} {prediction.PredictedLabel} {prediction.Score.Max():F4}");
        }
    }

    private static void EvaluateModel(MLContext mlContext, IDataView testDataset, ITransformer trainedModel)
    {
        var predictionsDataView = trainedModel.Transform(testDataset);
        var metrics = mlContext.MulticlassClassification.Evaluate(predictionsDataView, labelColumnName: "LabelAsKey", predictedLabelColumnName: "PredictedLabel");
        Console.WriteLine($"MicroAccuracy: {metrics.MicroAccuracy:F3}  MacroAccuracy: {metrics.MacroAccuracy:F3}  LogLoss: {metrics.LogLoss:F3}");
    }

    private static void Predict(string imageClassifierModelZipFilePath, string imagesFolderPathForPredictions)
    {
        var mlContext = new MLContext(seed: 1);

        // Load the model
        var loadedModel = mlContext.Model.Load(imageClassifierModelZipFilePath, out var modelInputSchema);

        // Create prediction engine to try a single prediction (input = ImageData, output = ImagePrediction)
        var predictionEngine = mlContext.Model.CreatePredictionEngine<InMemoryImageData, ImagePrediction>(loadedModel);

        foreach (var imageToPredict in LoadInMemoryImagesFromDirectory(imagesFolderPathForPredictions, false))
        {
            var prediction = predictionEngine.Predict(imageToPredict);

            // Double-check using the index, as the sample does: column 3 of the output is the predicted key
            var maxScore = prediction.Score.Max();
            var maxIndex = prediction.Score.ToList().IndexOf(maxScore);
            VBuffer<ReadOnlyMemory<char>> keys = default;
            predictionEngine.OutputSchema[3].GetKeyValues(ref keys);
            var keysArray = keys.DenseValues().ToArray();
            var predictedLabelString = keysArray[maxIndex].ToString();
            if (predictedLabelString != prediction.PredictedLabel)
            {
                throw new InvalidOperationException($"key {predictedLabelString} != label {prediction.PredictedLabel}");
            }

            Console.WriteLine($"PREDICTION {imageToPredict.ImageFileName} {prediction.PredictedLabel} {maxScore:F4}");
        }

        // Disposing the model removes ML.NET's temporary copy of the ONNX graph.
        (loadedModel as IDisposable)?.Dispose();
    }

    public static IEnumerable<ImageData> LoadImagesFromDirectory(string folder, bool useFolderNameAsLabel = true)
        => FileUtils.LoadImagesFromDirectory(folder, useFolderNameAsLabel)
            .Select(x => new ImageData(x.imagePath, x.label));

    public static IEnumerable<InMemoryImageData> LoadInMemoryImagesFromDirectory(string folder, bool useFolderNameAsLabel = true)
        => FileUtils.LoadImagesFromDirectory(folder, useFolderNameAsLabel)
            .Select(x => new InMemoryImageData(
                image: File.ReadAllBytes(x.imagePath),
                label: x.label,
                imageFileName: Path.GetFileName(x.imagePath)));
}

public class ImageData
{
    public ImageData(string imagePath, string label)
    {
        ImagePath = imagePath;
        Label = label;
    }

    public readonly string ImagePath;

    public readonly string Label;
}

public class InMemoryImageData
{
    public InMemoryImageData(byte[] image, string label, string imageFileName)
    {
        Image = image;
        Label = label;
        ImageFileName = imageFileName;
    }

    public readonly byte[] Image;

    public readonly string Label;

    public readonly string ImageFileName;
}

public class ImagePrediction
{
    [ColumnName("Score")]
    public float[] Score;

    [ColumnName("PredictedLabel")]
    public string PredictedLabel;
}

public static class FileUtils
{
    public static IEnumerable<(string imagePath, string label)> LoadImagesFromDirectory(string folder, bool useFolderNameasLabel)
    {
        var imagesPath = Directory
            .GetFiles(folder, "*", searchOption: SearchOption.AllDirectories)
            .Where(x => Path.GetExtension(x) == ".jpg" || Path.GetExtension(x) == ".png")
            .OrderBy(x => x, StringComparer.Ordinal);

        return useFolderNameasLabel
            ? imagesPath.Select(imagePath => (imagePath, Directory.GetParent(imagePath).Name))
            : imagesPath.Select(imagePath => (imagePath, Path.GetFileNameWithoutExtension(imagePath)));
    }
}
