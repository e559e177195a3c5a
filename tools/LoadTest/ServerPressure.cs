using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.IO.Hashing;
using System.Net;
using System.Net.Http.Headers;
using SkiaSharp;

namespace MlNetFinetune.LoadTest;

/// <summary>Where and how hard to press: many large uploads at once, or the decompression-bomb corpus among good images.</summary>
public sealed record PressureOptions(Uri Url, int ServerPid, int Clients, int Bytes, int IdleSeconds, string? Images, int Copies)
{
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromMinutes(5);

    public static PressureOptions From(Arguments args, bool bombs)
    {
        var url = args.Required("--url");
        var options = new PressureOptions(
            Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri : throw new UserInputException($"--url {url}: not an absolute URL"),
            Arguments.ParseInt("--server-pid", args.Required("--server-pid")),
            bombs ? 0 : args.Int("--clients", 64),
            bombs ? 0 : args.Int("--bytes", 9_000_000),
            bombs ? 0 : args.Int("--idle-seconds", 10),
            bombs ? args.Required("--images") : null,
            bombs ? args.Int("--copies", 8) : 0);
        args.EnsureAllUsed();

        // A load test is an attack on whatever it points at; this one only ever points at this machine.
        if (!uri.IsLoopback)
        {
            throw new UserInputException($"--url {url}: only a loopback address (127.0.0.1, ::1, localhost) may be load-tested");
        }

        return options;
    }
}

/// <summary>Memory pressure on <c>serve</c>: the server's resident memory while it is flooded, and whether every good request is answered.</summary>
public static class ServerPressure
{
    /// <summary>Sends <see cref="PressureOptions.Clients"/> uploads of a real noise PNG of about <see cref="PressureOptions.Bytes"/> at once. 0 when all got a prediction.</summary>
    public static async Task<int> UploadsAsync(PressureOptions options, TextWriter output)
    {
        var image = NoisePng(options.Bytes);
        using var client = Client(options, options.Clients);
        var before = Memory(options.ServerPid, "VmRSS");
        using var sampler = new PeakSampler(options.ServerPid);
        var clock = Stopwatch.StartNew();
        var statuses = await Task.WhenAll(Enumerable.Range(0, options.Clients).Select(_ => PostAsync(client, image)));
        var elapsed = clock.Elapsed;
        var peak = sampler.Stop();
        var after = Memory(options.ServerPid, "VmRSS");
        await Task.Delay(TimeSpan.FromSeconds(options.IdleSeconds));
        var idle = Memory(options.ServerPid, "VmRSS");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{options.Clients} concurrent uploads of a {image.Length}-byte PNG: {Describe(statuses)} in {elapsed.TotalSeconds:F1} s; server RSS {before:F0} MB before, peak {peak:F0} MB sampled every 20 ms (VmHWM {Memory(options.ServerPid, "VmHWM"):F0} MB since start), {after:F0} MB after, {idle:F0} MB after {options.IdleSeconds} s idle"));
        return statuses.All(s => s == 200) ? 0 : 1;
    }

    /// <summary>Sends every bomb <see cref="PressureOptions.Copies"/> times at once among as many good images. 0 when every good image got 200 and every bomb a 4xx.</summary>
    public static async Task<int> BombsAsync(PressureOptions options, TextWriter output)
    {
        var good = Directory.EnumerateFiles(options.Images!, "*.png", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Take(16).Select(File.ReadAllBytes).ToArray();
        if (good.Length == 0)
        {
            throw new UserInputException($"--images {options.Images}: no PNG files found");
        }

        var bombs = Corpus();
        using var client = Client(options, 64);
        using var sampler = new PeakSampler(options.ServerPid);
        var requests = bombs.SelectMany(b => Enumerable.Repeat(b, options.Copies))
            .Select((bomb, i) => (Name: bomb.Name, Body: bomb.Body, Good: false))
            .Concat(Enumerable.Range(0, bombs.Count * options.Copies).Select(i => (Name: "good", Body: good[i % good.Length], Good: true)))
            .ToList();
        var statuses = await Task.WhenAll(requests.Select(r => PostAsync(client, r.Body)));
        var peak = sampler.Stop();
        var healthy = (await client.GetAsync("/health")).StatusCode == HttpStatusCode.OK;

        output.WriteLine("| file | bytes | answers |");
        output.WriteLine("|---|--:|---|");
        foreach (var bomb in bombs)
        {
            output.WriteLine($"| {bomb.Name} | {bomb.Body.Length} | {Describe([.. requests.Select((r, i) => (r, i)).Where(x => x.r.Name == bomb.Name).Select(x => statuses[x.i])])} |");
        }

        var goodStatuses = requests.Select((r, i) => (r, i)).Where(x => x.r.Good).Select(x => statuses[x.i]).ToArray();
        output.WriteLine($"| good sample PNGs, interleaved | | {Describe(goodStatuses)} |");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"server RSS peak {peak:F0} MB sampled every 20 ms (VmHWM {Memory(options.ServerPid, "VmHWM"):F0} MB since start); /health afterwards: {(healthy ? "ok" : "FAILED")}"));
        var bombsRefused = requests.Select((r, i) => (r, i)).Where(x => !x.r.Good).All(x => statuses[x.i] is >= 400 and < 500);
        return goodStatuses.All(s => s == 200) && bombsRefused && healthy ? 0 : 1;
    }

    /// <summary>Small files that declare or decode to huge images, one per trick.</summary>
    public static IReadOnlyList<(string Name, byte[] Body)> Corpus() =>
    [
        ("PNG declaring 65535x65535", Png(65535, 65535, bitDepth: 8, colorType: 6, rows: null)),
        ("1-bit PNG of 30000x30000, all of it", Png(30000, 30000, bitDepth: 1, colorType: 0, rows: 30000)),
        ("GIF: 10x10 screen, one 16000x16000 frame", Gif(16000)),
        ("GIF: 10x10 screen, one 30000x30000 frame", Gif(30000)),
        ("JPEG declaring 65500x65500", [0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xFF, 0xDC, 0xFF, 0xDC, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]),
        ("WebP VP8X canvas 16384x16384", WebP(16384)),
        ("BMP declaring 50000x50000", Bmp(50000)),
    ];

    private static HttpClient Client(PressureOptions options, int connections) =>
        new(new SocketsHttpHandler { MaxConnectionsPerServer = connections }) { BaseAddress = options.Url, Timeout = PressureOptions.RequestTimeout };

    private static async Task<int> PostAsync(HttpClient client, byte[] body)
    {
        try
        {
            using var content = new ByteArrayContent(body) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } };
            using var response = await client.PostAsync("/predict", content);
            return (int)response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return 0;
        }
    }

    private static string Describe(IEnumerable<int> statuses) =>
        string.Join(", ", statuses.GroupBy(s => s).OrderBy(g => g.Key).Select(g => $"{g.Count()} x {(g.Key == 0 ? "no answer" : g.Key.ToString(CultureInfo.InvariantCulture))}"));

    /// <summary>A PNG of random opaque colours: its colour is incompressible, so its size is about 3 bytes a pixel.</summary>
    private static byte[] NoisePng(int bytes)
    {
        var side = (int)Math.Sqrt(bytes / 3.0);
        using var bitmap = new SKBitmap(side, side, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var pixels = new byte[side * side * 4];
        new Random(1).NextBytes(pixels);
        for (var i = 3; i < pixels.Length; i += 4)
        {
            pixels[i] = 255;
        }

        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>A PNG header for <paramref name="width"/> x <paramref name="height"/>; with <paramref name="rows"/>, that many all-zero rows compressed in its IDAT.</summary>
    private static byte[] Png(int width, int height, byte bitDepth, byte colorType, int? rows)
    {
        var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = bitDepth;
        header[9] = colorType;
        Chunk(png, "IHDR", header);
        var data = new MemoryStream();
        using (var zlib = new ZLibStream(data, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            var row = new byte[1 + ((width * bitDepth * (colorType == 6 ? 4 : 1)) + 7) / 8];
            for (var i = 0; i < (rows ?? 1); i++)
            {
                zlib.Write(row);
            }
        }

        Chunk(png, "IDAT", data.ToArray());
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void Chunk(Stream png, string type, byte[] data)
    {
        var length = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
        png.Write(length);
        var typed = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        png.Write(typed);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32.HashToUInt32(typed));
        png.Write(crc);
    }

    /// <summary>29 bytes: a 10x10 logical screen with one frame of <paramref name="side"/> x <paramref name="side"/>.</summary>
    private static byte[] Gif(int side)
    {
        var gif = new List<byte>();
        gif.AddRange("GIF89a"u8.ToArray());
        gif.AddRange([10, 0, 10, 0, 0, 0, 0]);
        gif.AddRange([0x2C, 0, 0, 0, 0, (byte)side, (byte)(side >> 8), (byte)side, (byte)(side >> 8), 0]);
        gif.AddRange([2, 2, 0x4C, 0x01, 0, 0x3B]);
        return [.. gif];
    }

    private static byte[] WebP(int side)
    {
        var webp = new byte[30];
        "RIFF"u8.CopyTo(webp);
        BinaryPrimitives.WriteInt32LittleEndian(webp.AsSpan(4), webp.Length - 8);
        "WEBPVP8X"u8.CopyTo(webp.AsSpan(8));
        BinaryPrimitives.WriteInt32LittleEndian(webp.AsSpan(16), 10);
        var extent = side - 1;
        webp[24] = (byte)extent;
        webp[25] = (byte)(extent >> 8);
        webp[26] = (byte)(extent >> 16);
        webp[27] = (byte)extent;
        webp[28] = (byte)(extent >> 8);
        webp[29] = (byte)(extent >> 16);
        return webp;
    }

    private static byte[] Bmp(int side)
    {
        var bmp = new byte[54 + 16];
        "BM"u8.CopyTo(bmp);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(2), bmp.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(18), side);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(22), side);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(28), 24);
        return bmp;
    }

    private static double Memory(int pid, string field)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    /// <summary>The largest resident memory of the server seen while it runs, read every 20 ms.</summary>
    private sealed class PeakSampler : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task<double> _sampling;

        public PeakSampler(int pid) => _sampling = Task.Run(async () =>
        {
            var peak = 0.0;
            while (!_stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, Memory(pid, "VmRSS"));
                await Task.Delay(20);
            }

            return peak;
        });

        public double Stop()
        {
            _stop.Cancel();
            return _sampling.GetAwaiter().GetResult();
        }

        public void Dispose() => _stop.Dispose();
    }
}
