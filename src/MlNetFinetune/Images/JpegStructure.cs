using System.Buffers.Binary;
using System.Globalization;

namespace MlNetFinetune.Images;

/// <summary>
/// Checks that a JPEG's image data is whole by walking its entropy-coded data with its own Huffman tables and counting
/// blocks against the frame size, without decoding pixels. libjpeg decodes a truncated file with an end marker (FFD9)
/// appended as if it were whole (it feeds zeros for the missing bits and only warns), so the end marker proves nothing;
/// here a scan is complete only if every one of its blocks is decoded from real bits before the data meets a marker.
/// Bytes after the image data (camera trailers, "motion photo" videos) are never read.
/// <para>
/// Covered: Huffman-coded sequential (SOF0 baseline, SOF1 extended) and progressive (SOF2) JPEGs, any sampling, any
/// number of components, restart intervals, tables redefined between scans. A sequential image is complete when every
/// component's scan is; a progressive one when its scans have brought every coefficient of every component to full
/// precision (as libjpeg's progressive scan script does), so a file cut at a scan boundary is found too. Bits that
/// match no Huffman code are reported as corrupt (libjpeg would warn and decode the rest as gray). Not covered
/// (reported as not checked): arithmetic-coded, lossless and hierarchical JPEGs (SOF3, SOF5-7, SOF9-15), which the
/// decoder's own result codes must judge.
/// </para>
/// <para>
/// Memory: one 8-byte word per 8x8 block of a progressive image, so callers check the pixel limit first.
/// </para>
/// </summary>
internal static class JpegStructure
{
    /// <summary>What the walk found.</summary>
    internal enum Verdict
    {
        Complete,
        Truncated,
        Corrupt,
        NotChecked,
    }

    /// <summary>The verdict and, unless complete, what is wrong (without the source).</summary>
    internal readonly record struct Finding(Verdict Verdict, string Detail);

    /// <summary>Walks <paramref name="jpeg"/> and says whether its image data is complete.</summary>
    public static Finding Check(ReadOnlySpan<byte> jpeg) => new Walker(jpeg).Run();

    /// <summary>Throws <see cref="InvalidImageException"/> (<see cref="ImageProblem.Truncated"/> or <see cref="ImageProblem.Corrupt"/>) unless the image data is complete or of a kind not checked.</summary>
    public static void EnsureComplete(ReadOnlySpan<byte> jpeg, string source)
    {
        var finding = Check(jpeg);
        switch (finding.Verdict)
        {
            case Verdict.Truncated:
                throw new InvalidImageException(source, ImageProblem.Truncated, finding.Detail);
            case Verdict.Corrupt:
                throw new InvalidImageException(source, ImageProblem.Corrupt, finding.Detail);
        }
    }

    private sealed class Component(int id, int horizontal, int vertical)
    {
        public int Id { get; } = id;

        public int Horizontal { get; } = horizontal;

        public int Vertical { get; } = vertical;

        public int BlocksPerLine { get; set; }

        public int BlocksPerColumn { get; set; }

        public int DcTable { get; set; }

        public int AcTable { get; set; }

        /// <summary>Per block, which coefficients (zigzag index) are nonzero so far: refinement scans send a bit for each. Progressive only.</summary>
        public ulong[]? Nonzero { get; set; }

        /// <summary>Per coefficient, the lowest bit position sent so far (0 = full precision), -1 before any scan.</summary>
        public int[] Precision { get; } = Enumerable.Repeat(-1, 64).ToArray();

        public bool Scanned { get; set; }
    }

    /// <summary>A canonical Huffman table with a 9-bit fast lookup.</summary>
    private sealed class HuffmanTable
    {
        public const int FastBits = 9;

        /// <summary>(code length &lt;&lt; 8) | symbol for every 9-bit prefix that holds a whole code; 0 where the code is longer.</summary>
        public ushort[] Fast { get; } = new ushort[1 << FastBits];

        /// <summary>Largest code of each length (1..16), -1 when there is none.</summary>
        public int[] MaxCode { get; } = new int[17];

        /// <summary>Index into <see cref="Symbols"/> of the first code of each length, minus that code.</summary>
        public int[] Offset { get; } = new int[17];

        public byte[] Symbols { get; } = new byte[256];

        /// <summary>
        /// For AC tables: for every 9-bit prefix holding a whole code of a nonzero coefficient and its extra bits,
        /// (zero run &lt;&lt; 8) | (code length + extra bits); 0 otherwise. Most coefficients take one lookup then.
        /// </summary>
        public ushort[] FastAc { get; } = new ushort[1 << FastBits];

        /// <summary>Builds the table from the 16 code counts and the symbols of a DHT segment; null when the counts are impossible.</summary>
        public static HuffmanTable? Build(ReadOnlySpan<byte> counts, ReadOnlySpan<byte> symbols)
        {
            var table = new HuffmanTable();
            symbols.CopyTo(table.Symbols);
            int code = 0, index = 0;
            for (var length = 1; length <= 16; length++)
            {
                table.Offset[length] = index - code;
                for (var i = 0; i < counts[length - 1]; i++, code++, index++)
                {
                    // As in libjpeg: every code must fit its length, and none may be all ones.
                    if (code + 1 >= 1 << length)
                    {
                        return null;
                    }

                    if (length <= FastBits)
                    {
                        var first = code << (FastBits - length);
                        table.Fast.AsSpan(first, 1 << (FastBits - length)).Fill((ushort)((length << 8) | symbols[index]));
                    }
                }

                table.MaxCode[length] = counts[length - 1] == 0 ? -1 : code - 1;
                code <<= 1;
            }

            for (var prefix = 0; prefix < table.Fast.Length; prefix++)
            {
                int entry = table.Fast[prefix], length = entry >> 8, symbol = entry & 0xFF, size = symbol & 15;
                if (entry != 0 && size != 0 && length + size <= FastBits)
                {
                    table.FastAc[prefix] = (ushort)(((symbol >> 4) << 8) | (length + size));
                }
            }

            return table;
        }
    }

    private ref struct Walker(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private readonly HuffmanTable?[] _dcTables = new HuffmanTable?[4];
        private readonly HuffmanTable?[] _acTables = new HuffmanTable?[4];
        private Component[] _components = [];
        private bool _progressive;
        private int _restartInterval;
        private int _mcusPerLine;
        private int _mcusPerColumn;
        private int _scans;

        // The bit reader: bits are taken from the top of _bits. After the data meets a marker it is fed zero bits, as
        // libjpeg does; taking any of those means the scan needed data that is not there.
        private int _pos;
        private ulong _bits;
        private int _count;
        private int _fake;
        private bool _atMarker;
        private bool _overrun;
        private bool _badCode;
        private int _eobRun;

        public Finding Run()
        {
            _pos = 2;
            while (true)
            {
                if (!SeekMarker())
                {
                    return Ended();
                }

                var marker = _data[_pos + 1];
                _pos += 2;
                if (marker is 0xD8 or 0x01 or (>= 0xD0 and <= 0xD7))
                {
                    continue;
                }

                if (marker == 0xD9)
                {
                    return Ended();
                }

                if (_pos + 2 > _data.Length)
                {
                    return Truncated(string.Create(CultureInfo.InvariantCulture, $"truncated JPEG (the file ends inside a marker segment at byte {_pos})"));
                }

                int length = BinaryPrimitives.ReadUInt16BigEndian(_data[_pos..]);
                if (length < 2)
                {
                    return Corrupt(string.Create(CultureInfo.InvariantCulture, $"corrupt JPEG (marker segment at byte {_pos} has length {length})"));
                }

                if (_pos + length > _data.Length)
                {
                    return Truncated(string.Create(CultureInfo.InvariantCulture,
                        $"truncated JPEG (the marker segment at byte {_pos} declares {length} bytes; the file ends {_data.Length - _pos} bytes into it)"));
                }

                var segment = _data.Slice(_pos + 2, length - 2);
                _pos += length;
                Finding? finding = marker switch
                {
                    0xC0 or 0xC1 or 0xC2 => Frame(segment, progressive: marker == 0xC2),
                    0xC3 or (>= 0xC5 and <= 0xC7) or (>= 0xC9 and <= 0xCB) or (>= 0xCD and <= 0xCF) => new Finding(Verdict.NotChecked,
                        "lossless, hierarchical or arithmetic-coded JPEG: its image data is not checked"),
                    0xC4 => HuffmanTables(segment),
                    0xDD => RestartInterval(segment),
                    0xDA => Scan(segment),
                    _ => null,
                };
                if (finding is { } found)
                {
                    return found;
                }
            }
        }

        /// <summary>Moves to the next marker (FF followed by a code), past stray bytes and stuffed FF00 as libjpeg does; false at the end of the data.</summary>
        private bool SeekMarker()
        {
            while (_pos + 1 < _data.Length)
            {
                if (_data[_pos] == 0xFF && _data[_pos + 1] is not 0x00 and not 0xFF)
                {
                    return true;
                }

                _pos++;
            }

            return false;
        }

        /// <summary>The data ended (EOI or end of file) before a scan completed the image.</summary>
        private readonly Finding Ended()
        {
            if (_components.Length == 0 || _scans == 0)
            {
                return Truncated("truncated JPEG (the file ends before its image data)");
            }

            return Truncated(_progressive
                ? "truncated JPEG (the file ends before the progressive scans complete the image)"
                : "truncated JPEG (the file ends before every colour component has been sent)");
        }

        private Finding? Frame(ReadOnlySpan<byte> segment, bool progressive)
        {
            if (segment.Length < 6 || segment.Length < 6 + 3 * segment[5] || segment[5] == 0)
            {
                return Corrupt("corrupt JPEG (malformed frame header)");
            }

            int height = BinaryPrimitives.ReadUInt16BigEndian(segment[1..]), width = BinaryPrimitives.ReadUInt16BigEndian(segment[3..]);
            if (height == 0 || width == 0)
            {
                return new Finding(Verdict.NotChecked, "JPEG whose height comes after the image data (DNL): not checked");
            }

            _progressive = progressive;
            _components = new Component[segment[5]];
            for (var i = 0; i < _components.Length; i++)
            {
                var sampling = segment[7 + 3 * i];
                if (sampling >> 4 is < 1 or > 4 || (sampling & 15) is < 1 or > 4)
                {
                    return Corrupt("corrupt JPEG (impossible sampling factors)");
                }

                _components[i] = new Component(segment[6 + 3 * i], sampling >> 4, sampling & 15);
            }

            int maxHorizontal = _components.Max(c => c.Horizontal), maxVertical = _components.Max(c => c.Vertical);
            _mcusPerLine = DivideUp(width, 8 * maxHorizontal);
            _mcusPerColumn = DivideUp(height, 8 * maxVertical);
            foreach (var component in _components)
            {
                component.BlocksPerLine = DivideUp(DivideUp(width * component.Horizontal, maxHorizontal), 8);
                component.BlocksPerColumn = DivideUp(DivideUp(height * component.Vertical, maxVertical), 8);
                if (progressive)
                {
                    component.Nonzero = new ulong[component.BlocksPerLine * component.BlocksPerColumn];
                }
            }

            return null;
        }

        private readonly Finding? HuffmanTables(ReadOnlySpan<byte> segment)
        {
            while (!segment.IsEmpty)
            {
                if (segment.Length < 17)
                {
                    return Corrupt("corrupt JPEG (malformed Huffman table)");
                }

                int tableClass = segment[0] >> 4, id = segment[0] & 15, symbols = 0;
                foreach (var count in segment.Slice(1, 16))
                {
                    symbols += count;
                }

                var table = tableClass > 1 || id > 3 || symbols > 256 || segment.Length < 17 + symbols
                    ? null
                    : HuffmanTable.Build(segment.Slice(1, 16), segment.Slice(17, symbols));
                if (table is null)
                {
                    return Corrupt("corrupt JPEG (malformed Huffman table)");
                }

                (tableClass == 0 ? _dcTables : _acTables)[id] = table;
                segment = segment[(17 + symbols)..];
            }

            return null;
        }

        private Finding? RestartInterval(ReadOnlySpan<byte> segment)
        {
            if (segment.Length < 2)
            {
                return Corrupt("corrupt JPEG (malformed restart interval)");
            }

            _restartInterval = BinaryPrimitives.ReadUInt16BigEndian(segment);
            return null;
        }

        private Finding? Scan(ReadOnlySpan<byte> segment)
        {
            if (_components.Length == 0 || segment.Length < 1 || segment[0] == 0 || segment.Length < 4 + 2 * segment[0])
            {
                return Corrupt("corrupt JPEG (scan without a frame, or malformed scan header)");
            }

            var scanned = new Component[segment[0]];
            for (var i = 0; i < scanned.Length; i++)
            {
                var id = segment[1 + 2 * i];
                var component = Array.Find(_components, c => c.Id == id);
                if (component is null)
                {
                    return Corrupt(string.Create(CultureInfo.InvariantCulture, $"corrupt JPEG (scan names component {id}, which the frame lacks)"));
                }

                component.DcTable = segment[2 + 2 * i] >> 4;
                component.AcTable = segment[2 + 2 * i] & 15;
                scanned[i] = component;
            }

            var parameters = segment[(1 + 2 * scanned.Length)..];
            int start = parameters[0], end = parameters[1], high = parameters[2] >> 4, low = parameters[2] & 15;
            if (_progressive && (start > end || end > 63 || (start == 0 && end != 0) || (start > 0 && scanned.Length != 1)))
            {
                return Corrupt("corrupt JPEG (impossible progressive scan)");
            }

            foreach (var component in scanned)
            {
                var needsDc = !_progressive || (start == 0 && high == 0);
                var needsAc = !_progressive || start > 0;
                if ((needsDc && (component.DcTable > 3 || _dcTables[component.DcTable] is null))
                    || (needsAc && (component.AcTable > 3 || _acTables[component.AcTable] is null)))
                {
                    return Corrupt("corrupt JPEG (scan uses a Huffman table that is not defined)");
                }
            }

            _scans++;
            var finding = Entropy(scanned, start, end, high);
            if (finding is not null)
            {
                return finding;
            }

            foreach (var component in scanned)
            {
                component.Scanned = true;
                if (_progressive)
                {
                    component.Precision.AsSpan(start, end - start + 1).Fill(low);
                }
            }

            var complete = _progressive
                ? _components.All(c => c.Precision.All(p => p == 0))
                : _components.All(c => c.Scanned);
            return complete ? new Finding(Verdict.Complete, "") : null;
        }

        /// <summary>Decodes the entropy-coded data of one scan, counting its MCUs; null when every one was there.</summary>
        private Finding? Entropy(Component[] scanned, int start, int end, int high)
        {
            _bits = 0;
            _count = 0;
            _fake = 0;
            _atMarker = false;
            _overrun = false;
            _badCode = false;
            _eobRun = 0;
            var single = scanned.Length == 1;
            var total = single ? scanned[0].BlocksPerLine * scanned[0].BlocksPerColumn : _mcusPerLine * _mcusPerColumn;
            for (var mcu = 0; mcu < total; mcu++)
            {
                if (_restartInterval > 0 && mcu > 0 && mcu % _restartInterval == 0 && !Restart())
                {
                    return Missing(mcu, total);
                }

                if (single)
                {
                    Block(scanned[0], mcu, start, end, high);
                }
                else
                {
                    foreach (var component in scanned)
                    {
                        for (var i = component.Horizontal * component.Vertical; i > 0; i--)
                        {
                            Block(component, -1, start, end, high);
                        }
                    }
                }

                if (_overrun)
                {
                    return Missing(mcu, total);
                }

                if (_badCode)
                {
                    return Corrupt(string.Create(CultureInfo.InvariantCulture,
                        $"corrupt JPEG (invalid Huffman code in scan {_scans}, MCU {mcu + 1} of {total}, near byte {_pos})"));
                }
            }

            return null;
        }

        private readonly Finding Missing(int mcu, int total) => Truncated(string.Create(CultureInfo.InvariantCulture,
            $"truncated JPEG (the image data of scan {_scans} stops after {mcu} of {total} MCUs, at byte {_pos}, whatever follows)"));

        /// <summary>At a restart boundary: drops the byte padding and expects an RSTn marker; false when the data ends or holds another marker instead.</summary>
        private bool Restart()
        {
            if (!SeekMarker() || _data[_pos + 1] is < 0xD0 or > 0xD7)
            {
                return false;
            }

            _pos += 2;
            _bits = 0;
            _count = 0;
            _fake = 0;
            _atMarker = false;
            _eobRun = 0;
            return true;
        }

        private void Block(Component component, int block, int start, int end, int high)
        {
            if (!_progressive)
            {
                Sequential(component);
            }
            else if (start == 0)
            {
                if (high == 0)
                {
                    DcDifference(component);
                }
                else
                {
                    Skip(1);
                }
            }
            else if (high == 0)
            {
                AcFirst(component, block, start, end);
            }
            else
            {
                AcRefine(component, block, start, end);
            }
        }

        private void DcDifference(Component component)
        {
            var size = Decode(_dcTables[component.DcTable]!);
            if (size > 16)
            {
                _badCode = true;
                return;
            }

            Skip(size);
        }

        private void Sequential(Component component)
        {
            DcDifference(component);
            var ac = _acTables[component.AcTable]!;
            for (var k = 1; k < 64 && !_badCode;)
            {
                if (_count < 32)
                {
                    Fill();
                }

                var fast = ac.FastAc[(int)(_bits >> (64 - HuffmanTable.FastBits))];
                if (fast != 0)
                {
                    Consume(fast & 0xFF);
                    k += (fast >> 8) + 1;
                    continue;
                }

                var symbol = Decode(ac);
                int run = symbol >> 4, bits = symbol & 15;
                if (bits != 0)
                {
                    Skip(bits);
                    k += run + 1;
                }
                else if (run == 15)
                {
                    k += 16;
                }
                else
                {
                    break;
                }
            }
        }

        private void AcFirst(Component component, int block, int start, int end)
        {
            if (_eobRun > 0)
            {
                _eobRun--;
                return;
            }

            var ac = _acTables[component.AcTable]!;
            var nonzero = component.Nonzero![block];
            for (var k = start; k <= end && !_badCode;)
            {
                if (_count < 32)
                {
                    Fill();
                }

                var fast = ac.FastAc[(int)(_bits >> (64 - HuffmanTable.FastBits))];
                if (fast != 0)
                {
                    Consume(fast & 0xFF);
                    k += fast >> 8;
                    if (k <= 63)
                    {
                        nonzero |= 1UL << k;
                    }

                    k++;
                    continue;
                }

                var symbol = Decode(ac);
                int run = symbol >> 4, bits = symbol & 15;
                if (bits == 0)
                {
                    if (run < 15)
                    {
                        _eobRun = (1 << run) + Take(run) - 1;
                        break;
                    }

                    k += 16;
                    continue;
                }

                k += run;
                Skip(bits);
                if (k <= 63)
                {
                    nonzero |= 1UL << k;
                }

                k++;
            }

            component.Nonzero[block] = nonzero;
        }

        /// <summary>libjpeg's decode_mcu_AC_refine, keeping only which coefficients are nonzero.</summary>
        private void AcRefine(Component component, int block, int start, int end)
        {
            var ac = _acTables[component.AcTable]!;
            var nonzero = component.Nonzero![block];
            var k = start;
            if (_eobRun == 0)
            {
                for (; k <= end && !_badCode; k++)
                {
                    var symbol = Decode(ac);
                    int run = symbol >> 4, bits = symbol & 15;
                    if (bits != 0)
                    {
                        Skip(1);
                    }
                    else if (run != 15)
                    {
                        _eobRun = (1 << run) + Take(run);
                        break;
                    }

                    do
                    {
                        if (((nonzero >> k) & 1) != 0)
                        {
                            Skip(1);
                        }
                        else if (--run < 0)
                        {
                            break;
                        }

                        k++;
                    }
                    while (k <= end);

                    if (bits != 0 && k <= 63)
                    {
                        nonzero |= 1UL << k;
                    }
                }
            }

            if (_eobRun > 0)
            {
                for (; k <= end; k++)
                {
                    if (((nonzero >> k) & 1) != 0)
                    {
                        Skip(1);
                    }
                }

                _eobRun--;
            }

            component.Nonzero[block] = nonzero;
        }

        /// <summary>The next Huffman symbol; flags a bad code (and returns 0) when the bits match no code.</summary>
        private int Decode(HuffmanTable table)
        {
            if (_count < 32)
            {
                Fill();
            }

            var entry = table.Fast[(int)(_bits >> (64 - HuffmanTable.FastBits))];
            if (entry != 0)
            {
                Consume(entry >> 8);
                return entry & 0xFF;
            }

            for (var length = HuffmanTable.FastBits + 1; length <= 16; length++)
            {
                var code = (int)(_bits >> (64 - length));
                if (code <= table.MaxCode[length])
                {
                    Consume(length);
                    return table.Symbols[code + table.Offset[length]];
                }
            }

            // Bits that match no code are damage, unless the zeros fed after the data's end took part in them.
            if (_count - _fake < 16)
            {
                _overrun = true;
            }
            else
            {
                _badCode = true;
            }

            return 0;
        }

        private void Skip(int bits)
        {
            if (bits == 0)
            {
                return;
            }

            if (_count < bits)
            {
                Fill();
            }

            Consume(bits);
        }

        private int Take(int bits)
        {
            if (bits == 0)
            {
                return 0;
            }

            if (_count < bits)
            {
                Fill();
            }

            var value = (int)(_bits >> (64 - bits));
            Consume(bits);
            return value;
        }

        private void Consume(int bits)
        {
            _bits <<= bits;
            _count -= bits;

            // The fed zeros sit at the end of the buffer: fewer bits left than zeros means some of them were taken.
            if (_count < _fake)
            {
                _overrun = true;
                _fake = _count;
            }
        }

        /// <summary>Tops the buffer up to at least 57 bits: data bytes (FF00 is a stuffed FF) until a marker or the end, then zeros.</summary>
        private void Fill()
        {
            var data = _data;
            int count = _count, pos = _pos;
            var bits = _bits;
            while (count <= 56)
            {
                if (!_atMarker && pos < data.Length && (data[pos] != 0xFF || (pos + 1 < data.Length && data[pos + 1] == 0x00)))
                {
                    bits |= (ulong)data[pos] << (56 - count);
                    pos += data[pos] == 0xFF ? 2 : 1;
                }
                else
                {
                    _atMarker = true;
                    _fake += 8;
                }

                count += 8;
            }

            (_bits, _count, _pos) = (bits, count, pos);
        }

        private static int DivideUp(int value, int divisor) => (value + divisor - 1) / divisor;

        private static Finding Truncated(string detail) => new(Verdict.Truncated, detail);

        private static Finding Corrupt(string detail) => new(Verdict.Corrupt, detail);
    }
}
