Bwj
locationweights.binj
offset0j
length16p